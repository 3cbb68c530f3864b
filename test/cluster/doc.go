// Package cluster is the multi-host suite: real hosts made of Linux network
// namespaces joined by a bridge, a real 3-node nats-server cluster, and the
// real gatework binary in its roles (gateway, api, worker) on those hosts,
// with clients connecting across them. Its tests need root and the ip
// command (iproute2) and carry the build tag cluster:
//
//	go test -tags=cluster ./test/cluster/...
//
// Every address it uses lives inside the namespaces it makes (10.77.0.0/24);
// every namespace and process it makes is removed at the end of each test,
// and leftovers of an interrupted run (namespaces named gwct*) are swept at
// the start.
package cluster
