// Package metrics exports a gatework node's numbers to Prometheus: one
// Collector reads the gateway's, the HTTP API's and the bus connection's
// stats at scrape time, so that nothing on the hot paths touches
// Prometheus. docs/operations.md lists every metric.
package metrics
