package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
)

// hashPasswordCmd is "mqstreams hash-password".
type hashPasswordCmd struct {
	Cost int `default:"10" help:"bcrypt cost (4-31); each step doubles the work of a login."`
}

// Run reads one password line and prints its credentials string.
func (c hashPasswordCmd) Run(e env) error {
	pw, err := readPassword(e.stdin)
	if err != nil {
		return err
	}
	cr, err := auth.HashPassword(pw, c.Cost)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, cr.String())
	return nil
}

// readPassword reads one line (without its line end) as the password.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on stdin (give one line)")
	}
	return pw, nil
}

// usersTarget says where a users command acts: a running server's HTTP API, or the data
// dir of a stopped server.
type usersTarget struct {
	apiTarget
	DataDir string `help:"Act on the data dir of a stopped server instead of a running one." placeholder:"DIR"`
}

// apiTarget is a running server's HTTP API, as the CLI's subcommands reach it.
type apiTarget struct {
	Server string `default:"http://localhost:8080" env:"MQSTREAMS_SERVER" help:"HTTP address of the running server."`
	User   string `env:"MQSTREAMS_USER" help:"User to authenticate as (password in MQSTREAMS_PASSWORD)."`
	CACert string `name:"cacert" help:"CA bundle to verify an https server with." placeholder:"FILE"`
	Output string `short:"o" default:"table" enum:"table,json" help:"Output: table or json."`
}

// usersCmd is "mqstreams users ...".
type usersCmd struct {
	List   usersListCmd   `cmd:"" help:"List users with their grants."`
	Add    usersAddCmd    `cmd:"" help:"Add a user; the password is read as one line on stdin."`
	Delete usersDeleteCmd `cmd:"" help:"Delete a user added at run time."`
	Passwd usersPasswdCmd `cmd:"" help:"Change a user's password; the new one is read as one line on stdin."`
}

type usersListCmd struct{ usersTarget }

type usersAddCmd struct {
	usersTarget
	Name      string   `arg:"" help:"Username."`
	Superuser bool     `help:"May do everything."`
	ACL       []string `name:"acl" help:"Grant KIND:PATTERN:OPS, e.g. topic:plant/#:publish,subscribe or stream:telemetry:read (repeatable)."`
}

type usersDeleteCmd struct {
	usersTarget
	Name string `arg:"" help:"Username."`
}

type usersPasswdCmd struct {
	usersTarget
	Name string `arg:"" help:"Username."`
}

// Run lists the users.
func (c usersListCmd) Run(e env) error {
	var users []userJSON
	if c.DataDir != "" {
		err := c.offline(func(s *auth.Store) error {
			for _, u := range s.Users() {
				users = append(users, toUserJSON(u))
			}
			return nil
		})
		if err != nil {
			return err
		}
	} else {
		var resp struct {
			Data []userJSON `json:"data"`
		}
		if err := c.call(http.MethodGet, "/api/v1/users", nil, &resp); err != nil {
			return err
		}
		users = resp.Data
	}
	if c.Output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(users)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tSOURCE\tSUPERUSER\tACL")
	for _, u := range users {
		var acl []string
		for _, r := range u.ACL {
			rule, err := r.Rule()
			if err != nil {
				continue
			}
			acl = append(acl, fmt.Sprintf("%s:%s:%s", rule.Resource, rule.Pattern(), rule.Ops))
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", u.Username, u.Source, u.Superuser, strings.Join(acl, " "))
	}
	return tw.Flush()
}

// Run adds the user.
func (c usersAddCmd) Run(e env) error {
	pw, err := readPassword(e.stdin)
	if err != nil {
		return err
	}
	u := userJSON{Username: c.Name, Superuser: c.Superuser, ACL: []auth.RuleSpec{}}
	var rules []auth.Rule
	for _, a := range c.ACL {
		r, err := auth.ParseRuleFlag(a)
		if err != nil {
			return err
		}
		rules = append(rules, r)
		u.ACL = append(u.ACL, r.Spec())
	}
	if c.DataDir != "" {
		cr, err := auth.HashPassword(pw, 0)
		if err != nil {
			return err
		}
		return c.offline(func(s *auth.Store) error {
			return s.AddUser(auth.User{Name: c.Name, Credentials: cr, Superuser: c.Superuser, Rules: rules})
		})
	}
	u.Password = pw
	if err := c.call(http.MethodPost, "/api/v1/users", u, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "user %s added\n", c.Name)
	return nil
}

// Run deletes the user.
func (c usersDeleteCmd) Run(e env) error {
	if c.DataDir != "" {
		return c.offline(func(s *auth.Store) error { return s.DeleteUser(c.Name) })
	}
	if err := c.call(http.MethodDelete, "/api/v1/users/"+url.PathEscape(c.Name), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "user %s deleted\n", c.Name)
	return nil
}

// Run changes the password.
func (c usersPasswdCmd) Run(e env) error {
	pw, err := readPassword(e.stdin)
	if err != nil {
		return err
	}
	if c.DataDir != "" {
		cr, err := auth.HashPassword(pw, 0)
		if err != nil {
			return err
		}
		return c.offline(func(s *auth.Store) error { return s.SetPassword(c.Name, cr) })
	}
	if err := c.call(http.MethodPut, "/api/v1/users/"+url.PathEscape(c.Name)+"/password", userJSON{Password: pw}, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "password of %s changed\n", c.Name)
	return nil
}

// offline opens the data dir of a stopped server and runs f on its user store (users
// of a config file are not known here, so names are checked against stored ones only).
func (t usersTarget) offline(f func(*auth.Store) error) error {
	l, err := openLog(t.DataDir, zerolog.Nop(), nil)
	if err != nil {
		return err
	}
	s, err := auth.NewStore(auth.Options{Entries: l, Logger: zerolog.Nop()})
	if err == nil {
		err = f(s)
	}
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}

// call sends one API request and decodes the JSON answer into out (when not nil).
func (t apiTarget) call(method, path string, body, out any) error {
	client := &http.Client{Timeout: 30 * time.Second}
	if t.CACert != "" {
		pem, err := os.ReadFile(t.CACert)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate", t.CACert)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(t.Server, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.User != "" {
		req.SetBasicAuth(t.User, os.Getenv("MQSTREAMS_PASSWORD"))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Message)
		}
		return fmt.Errorf("%s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
