// kafkajs admin managing ACLs on a secured listener; JSON lines on stdout.
//
// usage: secure_kafkajs_acl.js BOOTSTRAP MECHANISM USER CAFILE create|describe|delete PRINCIPAL TOPIC
// The password comes from $MQS_PASSWORD. create grants READ on TOPIC (LITERAL) to
// PRINCIPAL; describe lists PRINCIPAL's bindings; delete removes its bindings on TOPIC.
'use strict';

const fs = require('fs');
const { Kafka, logLevel, AclResourceTypes, AclOperationTypes, AclPermissionTypes, ResourcePatternTypes } = require('kafkajs');

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const name = (table, v) => Object.keys(table).find((k) => table[k] === v) || String(v);

async function main() {
  const [bootstrap, mechanism, user, cafile, action, principal, topic] = process.argv.slice(2);
  const kafka = new Kafka({
    clientId: 'compat-kafkajs-acl',
    brokers: [bootstrap],
    ssl: { ca: [fs.readFileSync(cafile, 'utf-8')] },
    sasl: { mechanism: mechanism.toLowerCase(), username: user, password: process.env.MQS_PASSWORD },
    logLevel: logLevel.NOTHING,
    retry: { retries: 1 },
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (action === 'create') {
      await admin.createAcls({
        acl: [{
          resourceType: AclResourceTypes.TOPIC, resourceName: topic, resourcePatternType: ResourcePatternTypes.LITERAL,
          principal, host: '*', operation: AclOperationTypes.READ, permissionType: AclPermissionTypes.ALLOW,
        }],
      });
      emit({ type: 'created' });
    } else if (action === 'describe') {
      const res = await admin.describeAcls({
        resourceType: AclResourceTypes.ANY, resourcePatternType: ResourcePatternTypes.ANY, principal,
        host: '*', operation: AclOperationTypes.ANY, permissionType: AclPermissionTypes.ANY,
      });
      const acls = [];
      for (const r of res.resources) {
        for (const a of r.acls) {
          acls.push(`${a.principal} ${name(AclResourceTypes, r.resourceType)}:${name(ResourcePatternTypes, r.resourcePatternType)}:${r.resourceName} ${name(AclOperationTypes, a.operation)}`);
        }
      }
      emit({ type: 'acls', acls });
    } else if (action === 'delete') {
      const res = await admin.deleteAcls({
        filters: [{
          resourceType: AclResourceTypes.TOPIC, resourceName: topic, resourcePatternType: ResourcePatternTypes.LITERAL,
          principal, host: '*', operation: AclOperationTypes.ANY, permissionType: AclPermissionTypes.ANY,
        }],
      });
      const deleted = res.filterResponses.reduce((n, f) => n + f.matchingAcls.length, 0);
      emit({ type: 'deleted', deleted });
    }
  } finally {
    await admin.disconnect();
  }
}

main().catch((e) => {
  emit({ type: 'error', error: String(e && e.message), code: e && e.type });
  process.exit(1);
});
