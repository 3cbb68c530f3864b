package ops

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// rawClient is a WebSocket client without a goroutine: a socket and its
// reader.
type rawClient struct {
	c  net.Conn
	rd *bufio.Reader
}

// dialRaw opens a WebSocket connection to wsURL by hand.
func dialRaw(wsURL string) (*rawClient, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET " + u.Path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	rd := bufio.NewReaderSize(c, 256)
	status, err := rd.ReadString('\n')
	if err != nil || !bytes.HasPrefix([]byte(status), []byte("HTTP/1.1 101")) {
		c.Close()
		return nil, fmt.Errorf("upgrade: %q, %v", status, err)
	}
	for {
		l, err := rd.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		if l == "\r\n" {
			break
		}
	}
	_ = c.SetDeadline(time.Time{})
	return &rawClient{c: c, rd: rd}, nil
}

// closeFrame reads the next frame, expects a close frame and answers it;
// it returns the close code.
func (r *rawClient) closeFrame(deadline time.Time) (int, error) {
	_ = r.c.SetDeadline(deadline)
	var h [2]byte
	if _, err := io.ReadFull(r.rd, h[:]); err != nil {
		return 0, err
	}
	if h[0] != 0x88 || h[1]&0x80 != 0 || h[1]&0x7f > 125 {
		return 0, fmt.Errorf("not a close frame: % x", h)
	}
	payload := make([]byte, h[1]&0x7f)
	if _, err := io.ReadFull(r.rd, payload); err != nil {
		return 0, err
	}
	code := 1005
	if len(payload) >= 2 {
		code = int(payload[0])<<8 | int(payload[1])
	}
	// Answer with a masked close frame (mask 0: the payload is as is).
	_, _ = r.c.Write(append([]byte{0x88, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...))
	return code, nil
}

// TestStopManyClients: stop with 5,000 connected clients ends within
// shutdown_timeout, every client gets a close frame, and the master exits 0.
func TestStopManyClients(t *testing.T) {
	const clients = 5000
	n := newNode(t)
	n.start()
	clientsCh := make(chan *rawClient, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	next := make(chan struct{}, clients)
	for range clients {
		next <- struct{}{}
	}
	close(next)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := dialRaw(n.ws)
				if err != nil {
					errs <- err
					continue
				}
				clientsCh <- c
			}
		}()
	}
	wg.Wait()
	close(clientsCh)
	close(errs)
	var all []*rawClient
	for c := range clientsCh {
		all = append(all, c)
	}
	t.Cleanup(func() {
		for _, c := range all {
			c.c.Close()
		}
	})
	for err := range errs {
		t.Fatalf("%d of %d clients connected; first error: %v", len(all), clients, err)
	}
	waitFor(t, 10*time.Second, "5000 connections in status", func() bool {
		for _, p := range n.status().Processes {
			if p.Connections != nil {
				return *p.Connections == clients
			}
		}
		return false
	})

	start := time.Now()
	stopped := make(chan string, 1)
	go func() {
		out, errOut, code := n.run("stop")
		stopped <- fmt.Sprintf("exit %d %q %q", code, out, errOut)
	}()
	deadline := time.Now().Add(15 * time.Second)
	codes := map[int]int{}
	for i, c := range all {
		code, err := c.closeFrame(deadline)
		if err != nil {
			t.Fatalf("client %d: %v (%d had their close frame)", i, err, i)
		}
		codes[code]++
	}
	res := <-stopped
	took := time.Since(start)
	<-n.done
	if code := n.master.ProcessState.ExitCode(); code != 0 || !bytes.Contains([]byte(res), []byte("exit 0")) {
		t.Errorf("stop: %s; master exit %d", res, code)
	}
	t.Logf("stop with %d clients took %v; close codes %v", clients, took, codes)
	if took > 5*time.Second+2*time.Second { // shutdown_timeout 5s
		t.Errorf("stop took %v", took)
	}
}
