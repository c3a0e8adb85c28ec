// Command mqstreams is the mqstreams server: an MQTT broker whose publishes land in
// durable streams that Kafka clients read over the Kafka wire protocol.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kong"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// cli is the command line: one field per subcommand.
type cli struct {
	Serve        serveCmd        `cmd:"" help:"Run the server until SIGINT or SIGTERM (SIGHUP reloads TLS certificates)."`
	Users        usersCmd        `cmd:"" help:"Manage users: of a running server through its HTTP API, or of a stopped one with --data-dir."`
	Streams      streamsCmd      `cmd:"" help:"Manage streams of a running server through its HTTP API."`
	Groups       groupsCmd       `cmd:"" help:"Inspect and manage consumer groups of a running server through its HTTP API."`
	Cluster      clusterCmd      `cmd:"" help:"Inspect the cluster a running node belongs to, through its HTTP API."`
	HashPassword hashPasswordCmd `cmd:"" name:"hash-password" help:"Read one password line on stdin and print the hash for auth.users[].password_hash."`
	Version      versionCmd      `cmd:"" help:"Print the version."`
	Bench        benchCmd        `cmd:"" help:"Load generators: bench mqtt publishes to any MQTT broker and reports msg/s and ack latency."`
}

// env is what every command runs with, so tests can drive run() in process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// exitCode carries kong's requested exit (after -h, or a usage error) out of Parse.
type exitCode int

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the command line and runs the subcommand; it returns the exit code:
// 0 success, 1 failure, 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	return runWith(args, env{stdin: os.Stdin, stdout: stdout, stderr: stderr})
}

func runWith(args []string, e env) (code int) {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("mqstreams"),
		kong.Description("MQTT in, durable streams, Kafka wire protocol out."),
		kong.Writers(e.stdout, e.stderr),
		kong.Exit(func(code int) { panic(exitCode(code)) }),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintf(e.stderr, "mqstreams: %v\n", err)
		return 2
	}
	defer func() {
		if r := recover(); r != nil {
			ec, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code = int(ec)
			if code == 1 {
				code = 2 // kong exits 1 on a usage error; ours is 2
			}
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			fmt.Fprintf(e.stderr, "mqstreams: %v\n", err)
			return 2
		}
		fmt.Fprintf(e.stderr, "mqstreams: %v\n", err)
		return 1
	}
	if err := kctx.Run(e); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		fmt.Fprintf(e.stderr, "mqstreams %s: %v\n", kctx.Command(), err)
		return 1
	}
	return 0
}

// Error lets a command return an exit code as an error (after it printed its reason).
func (c exitCode) Error() string { return fmt.Sprintf("exit %d", int(c)) }

type versionCmd struct{}

// Run prints the version.
func (versionCmd) Run(e env) error {
	fmt.Fprintf(e.stdout, "mqstreams %s\n", version)
	return nil
}
