// Command gwload is gatework's load generator: it opens many WebSocket
// connections to a node on this machine (127.0.0.0/8 only), spread over
// child processes and source addresses, and measures idle memory, fan-out,
// echo round trips and connection churn, against gatework or against a
// bare baseline server. `gwload --help` lists the workloads and flags; the
// logic is in package load and docs/benchmarks.md has the figures.
package main

import (
	"os"

	"github.com/gatework/gatework/load"
)

func main() { os.Exit(load.Main(os.Args[1:], os.Stdout, os.Stderr)) }
