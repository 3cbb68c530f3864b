package master

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// maxChildLine bounds a line the master writes to a child (the handoff
// included).
const maxChildLine = 1 << 20

// Child is the worker-process side of the child protocol: it reads the
// master's handoff and requests on the standard input and writes the
// ready line and stats answers on the standard output. Its methods are
// safe for concurrent use.
type Child struct {
	in *bufio.Scanner

	mu    sync.Mutex // one line at a time on out; guards stats
	out   io.Writer
	stats func() any // what a stats request gets; nil until set
}

// NewChild reads the handoff, the first line of in (Config.Handoff), and
// returns it with the Child that speaks the rest of the protocol on in and
// out. The handoff is the child's to decode; it may hold secrets.
func NewChild(in io.Reader, out io.Writer) (*Child, []byte, error) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), maxChildLine)
	if !sc.Scan() {
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		return nil, nil, fmt.Errorf("no settings from the master on stdin: %w", err)
	}
	return &Child{in: sc, out: out}, sc.Bytes(), nil
}

// SetStats sets what the answer to a stats request holds: f's result as
// JSON, f called for each request. Before it is set, requests get no
// answer (the master counts the child as not answering).
func (c *Child) SetStats(f func() any) {
	c.mu.Lock()
	c.stats = f
	c.mu.Unlock()
}

// Ready tells the master that the child serves (ReadyLine).
func (c *Child) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.out, ReadyLine+"\n"); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	return nil
}

// Serve answers the master's requests until its standard input ends (the
// master is gone, or stops the child that way), then returns: the child
// should then stop. It blocks; run it on a goroutine of its own.
func (c *Child) Serve() error {
	for c.in.Scan() {
		if c.in.Text() == StatsRequest {
			c.answerStats()
		}
	}
	if err := c.in.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("master requests: %w", err)
	}
	return nil
}

func (c *Child) answerStats() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats == nil {
		return
	}
	b, err := json.Marshal(c.stats())
	if err != nil {
		return
	}
	_, _ = io.WriteString(c.out, StatsPrefix+string(b)+"\n")
}
