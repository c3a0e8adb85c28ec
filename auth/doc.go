// Package auth owns who may connect and what each user may do, for both protocols: the
// user store (credentials kept only as salted hashes: bcrypt for passwords, SCRAM salted
// keys as Kafka stores them), the ACL model (MQTT topic filters, streams, consumer-group
// prefixes) and the rate limit on failed logins. The MQTT hook, the Kafka SASL handlers
// and the HTTP API ask a Store; none keeps a copy of users or rules.
package auth
