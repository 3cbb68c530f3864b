package master_test

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/master"
)

// TestChildProtocol: the handoff is the first line; a stats request gets
// no answer before SetStats and the JSON of the stats after; Ready writes
// the ready line; Serve returns at the end of the input.
func TestChildProtocol(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	t.Cleanup(func() { _ = inW.Close(); _ = outR.Close() })
	type made struct {
		c       *master.Child
		handoff []byte
		err     error
	}
	mc := make(chan made, 1)
	go func() {
		c, h, err := master.NewChild(inR, outW)
		mc <- made{c, h, err}
	}()
	write := func(s string) {
		t.Helper()
		if _, err := io.WriteString(inW, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"url":"nats://x"}`)
	m := <-mc
	if m.err != nil || string(m.handoff) != `{"url":"nats://x"}` {
		t.Fatalf("handoff %q, %v", m.handoff, m.err)
	}
	served := make(chan error, 1)
	go func() { served <- m.c.Serve() }()
	// The child's lines, read as they come (io.Pipe does not buffer).
	got := make(chan string, 8)
	go func() {
		lines := bufio.NewScanner(outR)
		for lines.Scan() {
			got <- lines.Text()
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case l := <-got:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no line from the child")
			return ""
		}
	}

	write(master.StatsRequest) // no stats yet: no answer
	if err := m.c.Ready(); err != nil {
		t.Fatal(err)
	}
	if l := next(); l != master.ReadyLine {
		t.Fatalf("first line %q, want the ready line (no answer before SetStats)", l)
	}
	m.c.SetStats(func() any { return map[string]int{"busy": 3} })
	write("unknown request")
	write(master.StatsRequest)
	if l := next(); l != master.StatsPrefix+`{"busy":3}` {
		t.Fatalf("stats answer %q", l)
	}
	_ = inW.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return at EOF")
	}
}

// TestChildNoHandoff: an input that ends before the handoff is an error.
func TestChildNoHandoff(t *testing.T) {
	if _, _, err := master.NewChild(strings.NewReader(""), io.Discard); err == nil || !strings.Contains(err.Error(), "no settings") {
		t.Errorf("NewChild on an empty input: %v", err)
	}
}
