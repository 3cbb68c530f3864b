// Package load is the load generator behind cmd/gwload: it opens many
// WebSocket connections to a gatework node on this machine and measures
// the four workloads of issue 6 — idle memory per connection (Idle),
// group fan-out through the HTTP API (FanOut), echo round trips (Echo)
// and connection churn (Churn) — with latencies in a log-linear histogram
// (Histogram, about 1.6 % precision, mergeable across processes).
//
// Run starts the children: by default processes re-executing the current
// binary as `gwload child <json>` (one process may hold at most 20,000
// files here), each holding its share of the connections, spread over
// source addresses 127.0.0.x. The parent drives them with JSON lines on
// their stdin (reset, report, run, quit) and merges the JSON reports they
// write to stdout. Every run is bounded by Config.Duration, MaxDuration
// and MaxConns, and refuses targets outside 127.0.0.0/8.
//
// StartBare starts the baseline: a minimal nbio WebSocket server that
// echoes and broadcasts with no framework, so that every figure can be
// given as a ratio to it.
package load
