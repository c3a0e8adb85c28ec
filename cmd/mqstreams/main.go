// Command mqstreams is the mqstreams server: an MQTT broker whose publishes land in
// durable streams that Kafka clients read over the Kafka wire protocol.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `mqstreams: MQTT in, durable streams, Kafka wire protocol out.

Usage:
  mqstreams serve [--config FILE] [--data-dir DIR] [--mqtt-addr A] [--kafka-addr A]
                  [--http-addr A] [--advertised-kafka-addr HOST:PORT]
                  [--log-level L] [--log-format json|console]
  mqstreams version

Run "mqstreams serve -h" for the flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches the subcommand and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serveCommand(args[1:], stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "mqstreams %s\n", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mqstreams: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
