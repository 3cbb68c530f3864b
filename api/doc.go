// Package api is the gatework API (SPEC §4) as a Go library: Dial a bus and
// call any method — send to a client, a uid, a group or everyone; bind uids,
// join groups, keep sessions; count and list who is online — against every
// gateway of the cluster. The same interface, API, is what worker handlers
// and the HTTP API use.
package api
