// Package conformance holds RFC 6455 conformance tests for the gateway's
// WebSocket listener. They drive raw bytes over TCP to a whole node
// started in-process with the echo app, in case groups modelled on the
// Autobahn testsuite (handshake, framing, ping/pong, fragmentation, UTF-8,
// close handshake, limits), and assert the exact echoed frames or close
// code and that the server then closes the TCP connection.
//
// The package has no API; run it with
//
//	go test ./test/conformance/
//
// A case whose expected behaviour the socket engine (nbio) does not give
// and the gateway cannot change is skipped with "RFC deviation: …" naming
// what was expected and what the engine does.
package conformance
