// Package cli is gatework's command line (start, config, config check,
// version) and its configuration loading: the only package that reads
// files, environment variables and flags. It turns them into the plain
// structs of the library packages (node.Config and what it holds).
//
// Precedence, lowest first: DefaultConfig, the YAML file (-c, or
// $GATEWORK_CONFIG), GATEWORK_<PATH> environment variables
// (GATEWORK_HTTP_ADDR for http.addr; GATEWORK_API_TOKEN is an alias of
// GATEWORK_HTTP_TOKEN), flags. Unknown keys, unknown GATEWORK_ variables
// and inconsistent values are errors naming the key and where it was set;
// docs/config.md documents every key.
//
// A program with its own handlers gets the whole command line with
//
//	func main() {
//		os.Exit(cli.Main(cli.App{Name: "myapp", Handlers: handlers}))
//	}
package cli
