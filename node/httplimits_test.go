package node_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/node"
)

// rawConn is a client socket to the node's HTTP server that writes
// requests by hand.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, n *node.Node) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", n.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// send writes s, failing the test on an error.
func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// answer reads one response within d; its body is read and closed.
func (c *rawConn) answer(d time.Duration) (*http.Response, string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// closedWithin reports whether the server closes the connection within d.
func (c *rawConn) closedWithin(d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestHTTPSlowBody checks the body deadline on real sockets: a body
// trickled a byte at a time is cut off at http.body_timeout with 408 and
// the connection closed, with a token and without one (loopback); a
// caller without the token configured is answered 401 before it sends any
// of its body.
func TestHTTPSlowBody(t *testing.T) {
	const bodyTimeout = 600 * time.Millisecond
	for _, token := range []string{"", "tok-slow"} {
		t.Run(fmt.Sprintf("token=%q", token), func(t *testing.T) {
			n := startNode(t, echo.Handlers(), func(c *node.Config) {
				c.HTTP.Token = token
				c.HTTP.BodyTimeout = bodyTimeout
			})
			auth := ""
			if token != "" {
				auth = "Authorization: Bearer " + token + "\r\n"
			}
			body := `{"message":"` + strings.Repeat("x", 80) + `"}`
			c := dialRaw(t, n)
			c.send(t, fmt.Sprintf("POST /api/sendToAll HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
				n.HTTPAddr(), auth, len(body)))
			start := time.Now()
			stop := make(chan struct{})
			trickled := make(chan int)
			go func() { // one byte every 50 ms: the body would take 4.5 s
				sent := 0
				defer func() { trickled <- sent }()
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for sent < len(body) {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := io.WriteString(c, body[sent:sent+1]); err != nil {
						return
					}
					sent++
				}
			}()
			resp, got, err := c.answer(5 * time.Second)
			took := time.Since(start)
			close(stop)
			sent := <-trickled
			if err != nil {
				t.Fatalf("no answer to a trickled body after %v: %v", took, err)
			}
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(got, `"request_timeout"`) || !resp.Close {
				t.Fatalf("status %d, close %v: %s; want 408 request_timeout and close", resp.StatusCode, resp.Close, got)
			}
			if took < bodyTimeout-50*time.Millisecond || took > bodyTimeout+time.Second {
				t.Errorf("cut off after %v, want about %v", took, bodyTimeout)
			}
			if sent >= len(body) {
				t.Errorf("the whole body (%d bytes) was sent", sent)
			}
			if !c.closedWithin(2 * time.Second) {
				t.Error("connection still open after the 408")
			}

			// A full body in time is served as usual.
			c = dialRaw(t, n)
			c.send(t, fmt.Sprintf("POST /api/sendToAll HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				n.HTTPAddr(), auth, len(body), body))
			if resp, got, err := c.answer(5 * time.Second); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("body in time: %v %v %s", resp, err, got)
			}

			if token == "" {
				return
			}
			// Without the token: 401 at once, not a byte of the body sent.
			c = dialRaw(t, n)
			c.send(t, fmt.Sprintf("POST /api/sendToAll HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
				n.HTTPAddr(), len(body)))
			start = time.Now()
			resp, got, err = c.answer(bodyTimeout / 2)
			if err != nil || resp.StatusCode != http.StatusUnauthorized || !resp.Close {
				t.Fatalf("without the token: %v %v %s; want 401 and close before the body", resp, err, got)
			}
			if !c.closedWithin(bodyTimeout / 2) {
				t.Errorf("connection still open %v after the 401", time.Since(start))
			}
		})
	}
}

// TestHTTPConnCap checks http.max_conns and its health reserve on real
// sockets: with the ordinary connections all held by slow callers,
// /healthz is still answered on a reserve connection, the API answers 503
// too_many_connections there, and once the reserve is held too a new
// connection waits in the backlog and is served as soon as one closes.
func TestHTTPConnCap(t *testing.T) {
	n := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.HTTP.MaxConns = 2
		c.HTTP.HealthConns = 1
	})
	get := func(path string) string {
		return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, n.HTTPAddr())
	}
	// Two callers hold the ordinary connections with unfinished headers.
	var held []*rawConn
	for range 2 {
		c := dialRaw(t, n)
		c.send(t, "POST /api/sendToAll HTTP/1.1\r\nHost: "+n.HTTPAddr().String()+"\r\n")
		held = append(held, c)
	}
	// Ensure the server accepted both: an ordinary connection answers
	// /healthz with keep-alive, so a third one would be the reserve.
	waitFor(t, 5*time.Second, func() bool {
		c := dialRaw(t, n)
		c.send(t, get("/healthz"))
		resp, _, err := c.answer(2 * time.Second)
		_ = c.Close()
		return err == nil && resp.Close
	})
	// The reserve answers health checks, and closes after one answer.
	c := dialRaw(t, n)
	c.send(t, get("/readyz"))
	if resp, got, err := c.answer(2 * time.Second); err != nil || resp.StatusCode != http.StatusOK || !resp.Close {
		t.Fatalf("/readyz on the reserve: %v %v %s", resp, err, got)
	}
	if !c.closedWithin(2 * time.Second) {
		t.Fatal("reserve connection still open after its answer")
	}
	// The reserve refuses the API without reading the body.
	var resp *http.Response
	var got string
	waitFor(t, 5*time.Second, func() bool { // the closed reserve slot frees
		c = dialRaw(t, n)
		c.send(t, "POST /api/sendToAll HTTP/1.1\r\nHost: "+n.HTTPAddr().String()+"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
		var err error
		resp, got, err = c.answer(time.Second)
		return err == nil
	})
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(got, `"too_many_connections"`) ||
		resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Fatalf("API on the reserve: %d %v %s", resp.StatusCode, resp.Header, got)
	}
	if !c.closedWithin(2 * time.Second) {
		t.Fatal("refused connection still open")
	}
	// Hold the reserve: the next connection waits for a slot.
	var reserve *rawConn
	waitFor(t, 5*time.Second, func() bool {
		reserve = dialRaw(t, n)
		reserve.send(t, "GET /healthz HTTP/1.1\r\n") // unfinished
		probe := dialRaw(t, n)
		probe.send(t, get("/healthz"))
		_, _, err := probe.answer(300 * time.Millisecond)
		_ = probe.Close()
		if err == nil { // the reserve slot was not free yet: again
			_ = reserve.Close()
		}
		return err != nil
	})
	reserveSince := time.Now()
	waiting := dialRaw(t, n)
	waiting.send(t, get("/healthz"))
	if _, _, err := waiting.answer(300 * time.Millisecond); err == nil {
		t.Fatal("answered beyond max_conns + health_conns")
	}
	_ = held[0].Close()
	if resp, got, err := waiting.answer(3 * time.Second); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("waiting connection after a slot freed: %v %v %s", resp, err, got)
	}
	// A reserve connection lives 5 s at most, whatever it sends.
	if !reserve.closedWithin(6500*time.Millisecond - time.Since(reserveSince)) {
		t.Error("reserve connection open for more than 5 s")
	}
}

// TestHTTPWriteTimeout checks http.write_timeout on a real socket: a
// caller that pipelines requests and stops reading the answers loses the
// connection once an answer has waited that long to be written, instead
// of holding it for ever.
func TestHTTPWriteTimeout(t *testing.T) {
	n := startNode(t, echo.Handlers(), func(c *node.Config) { c.HTTP.WriteTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", n.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Answers of some 50 KB each: 20 MB, more than the socket buffers
	// hold (4 MB to send, and 128 KB to receive while nobody reads).
	const requests = 400
	req := "GET /api/openapi.json HTTP/1.1\r\nHost: " + n.HTTPAddr().String() + "\r\n\r\n"
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for range requests {
			if _, err := io.WriteString(c, req); err != nil {
				return
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond) // not reading: the server's writes block
	start := time.Now()
	br := bufio.NewReader(c)
	answers := 0
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open after %d answers", answers)
			}
			break
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			break
		}
		answers++
	}
	<-wrote
	// Closed while we were not reading: what we read then is what the
	// buffers held, at once, and not every answer.
	if took := time.Since(start); answers >= requests || took > 3*time.Second {
		t.Fatalf("%d answers of %d in %v to a caller that stopped reading", answers, requests, took)
	}
	t.Logf("connection closed after %d answers (%v of reading)", answers, time.Since(start))
}

// TestHTTPBodyNotRead checks that a body sent to a path that takes none
// is not waited for: the answer comes at once and the connection closes,
// where net/http alone reads up to 256 KiB of it first.
func TestHTTPBodyNotRead(t *testing.T) {
	n := startNode(t, echo.Handlers(), nil)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/healthz", http.StatusMethodNotAllowed},
		{"GET", "/readyz", http.StatusOK},
		{"POST", "/nowhere", http.StatusNotFound},
		{"GET", "/metrics", http.StatusOK},
		{"POST", "/api", http.StatusMethodNotAllowed},
	} {
		c := dialRaw(t, n)
		c.send(t, fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\n", tc.method, tc.path, n.HTTPAddr()))
		resp, _, err := c.answer(time.Second)
		if err != nil || resp.StatusCode != tc.status || !resp.Close {
			t.Errorf("%s %s with a body not sent: %v %v; want %d at once, then close", tc.method, tc.path, resp, err, tc.status)
			continue
		}
		if !c.closedWithin(2 * time.Second) {
			t.Errorf("%s %s: connection still open", tc.method, tc.path)
		}
	}
}
