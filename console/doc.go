// Package console serves gatework's web pages from files embedded in the
// binary: the console (live connections, groups, uids, gateways, workers
// and rates, with actions on clients and groups) and the chat demo's page.
//
// The pages are plain HTML, CSS and JavaScript with no build step and
// nothing fetched from elsewhere. The console talks only to the HTTP API
// of the same origin (POST /api/<method>, getStats for the live figures),
// so it works against a one-process node and against a cluster's
// `gatework api` process alike, and it can do exactly what the token it is
// given may do. The chat page talks to the node's WebSocket listener with
// the line protocol of apps/chat.
package console
