package master

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// The control socket of a master (SocketPath of its pid file) answers one
// JSON line with one JSON line: `gatework status` and `gatework reload`
// ask the running master through it.

// ControlRequest is one request on the control socket.
type ControlRequest struct {
	// Cmd is what is asked: status or reload.
	Cmd string `json:"cmd"`
}

// ControlResponse is the JSON line that answers a ControlRequest.
type ControlResponse struct {
	// OK reports success; Error says why not.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Status is the answer to status (its shape is the caller's).
	Status json.RawMessage `json:"status,omitempty"`
}

// ControlServer answers requests on the control socket. Close stops it.
type ControlServer struct {
	ln     net.Listener
	path   string
	handle func(ctx context.Context, req ControlRequest) ControlResponse
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// ListenControl opens the control socket at path (replacing a stale one,
// only its owner may use it: mode 0600, and on Linux every connection's
// peer must run as the master's user or root) and serves it until Close: handle answers
// each request, with a context cancelled by Close; at most
// maxControlConns connections at once, each bounded in time and size.
func ListenControl(path string, handle func(context.Context, ControlRequest) ControlResponse) (*ControlServer, error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	_ = os.Chmod(path, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	s := &ControlServer{ln: ln, path: path, handle: handle, ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// maxControlConns bounds the connections served at once; more are closed.
const maxControlConns = 16

func (s *ControlServer) serve() {
	defer s.wg.Done()
	sem := make(chan struct{}, maxControlConns)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			_ = c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-sem }()
			s.serveConn(c)
		}()
	}
}

func (s *ControlServer) serveConn(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 4096)).ReadBytes('\n')
	if err != nil {
		return
	}
	var req ControlRequest
	var resp ControlResponse
	if err := peerAllowed(c); err != nil {
		resp.Error = err.Error()
	} else if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = "bad request: " + err.Error()
	} else {
		resp = s.handle(s.ctx, req)
	}
	b, _ := json.Marshal(resp)
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(append(b, '\n'))
}

// Close stops serving, cancels requests in progress, waits for them and
// removes the socket.
func (s *ControlServer) Close() {
	_ = s.ln.Close()
	s.cancel()
	s.wg.Wait()
	_ = os.Remove(s.path)
}

// CallControl sends req to the master's control socket at path and returns
// its answer; timeout bounds the whole exchange.
func CallControl(path string, req ControlRequest, timeout time.Duration) (ControlResponse, error) {
	var resp ControlResponse
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return resp, fmt.Errorf("control socket: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return resp, fmt.Errorf("control socket: %w", err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return resp, fmt.Errorf("control socket: %w", err)
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return resp, fmt.Errorf("control socket: bad answer: %w", err)
	}
	return resp, nil
}
