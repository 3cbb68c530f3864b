package gateway

import (
	"net"
	"testing"
	"time"

	"github.com/lesismal/nbio"
)

// TestSocketReading: setSocketReading reaches nbio's poller (the fields it
// reads are there) and, with the engine configured as the gateway runs it,
// a socket whose reading is off delivers nothing while its peer writes,
// and delivers what waited as soon as reading is on again, with no new
// input to trigger it.
func TestSocketReading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	eng := nbio.NewEngine(nbio.Config{NPoller: 1, ReadBufferSize: 16 << 10})
	got := make(chan []byte, 16)
	eng.OnData(func(_ *nbio.Conn, data []byte) { got <- append([]byte(nil), data...) })
	if err := startEngine(eng); err != nil {
		t.Fatal(err)
	}
	defer func() { time.Sleep(minEngineLife); eng.Stop() }()

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := adoptSocket(server)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.AddConn(nc); err != nil {
		t.Fatal(err)
	}
	expect := func(want string) {
		t.Helper()
		select {
		case b := <-got:
			if string(b) != want {
				t.Fatalf("read %q, want %q", b, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing read in 5 s, want %q", want)
		}
	}
	if _, err := client.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	expect("one")

	if err := setSocketReading(nc, false); err != nil {
		t.Fatalf("reading off: %v", err)
	}
	if _, err := client.Write([]byte("two")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		t.Fatalf("read %q with reading off", b)
	case <-time.After(300 * time.Millisecond):
	}
	if err := setSocketReading(nc, true); err != nil {
		t.Fatalf("reading on: %v", err)
	}
	expect("two")
	if _, err := client.Write([]byte("three")); err != nil {
		t.Fatal(err)
	}
	expect("three")
}
