package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/gatework/gatework/bus"
)

// wsEngine serves WebSocket clients with nbio: an epoll event loop with no
// goroutine per connection and buffers borrowed only while data moves.
type wsEngine struct {
	l        *listener
	upgrader *websocket.Upgrader
	engine   *nbhttp.Engine

	mu sync.Mutex
	ln net.Listener
}

func newWSEngine(l *listener) *wsEngine {
	return &wsEngine{l: l}
}

// wsTransport writes whole frames to the connection's socket.
type wsTransport struct {
	wc *websocket.Conn
}

func (t wsTransport) write(b []byte) error {
	_, err := t.wc.UnderlayerConn().Write(b)
	return err
}

func (t wsTransport) close() { _ = t.wc.Close() }

func (e *wsEngine) start() (net.Addr, error) {
	cfg := e.l.cfg
	u := websocket.NewUpgrader()
	u.KeepaliveTime = 0 // no per-connection read deadline timer
	u.MessageLengthLimit = cfg.MaxMessage
	u.CheckOrigin = func(*http.Request) bool { return true }
	u.OnMessage(e.onMessage)
	u.OnClose(e.onClose)
	u.SetPingHandler(e.onPing)
	e.upgrader = u

	mux := http.HandlerFunc(e.serveHTTP)
	e.engine = nbhttp.NewEngine(nbhttp.Config{
		Name:                         "gatework-ws-" + cfg.Name,
		Network:                      "tcp",
		Addrs:                        []string{cfg.Addr},
		NPoller:                      runtime.GOMAXPROCS(0),
		Handler:                      mux,
		ReleaseWebsocketPayload:      true,
		ReadBufferSize:               16 << 10,
		MaxWebsocketFramePayloadSize: cfg.MaxMessage,
		KeepaliveTime:                30 * time.Second, // HTTP requests before the upgrade
		// Run handlers on the poller goroutines: the gateway's own work per
		// message is short and never blocks.
		ServerExecutor: func(f func()) { f() },
		Listen: func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err == nil {
				e.mu.Lock()
				e.ln = ln
				e.mu.Unlock()
			}
			return ln, err
		},
	})
	// Text frames are checked by the gateway, which closes with 1007.
	e.engine.CheckUtf8 = func([]byte) bool { return true }
	e.engine.OnWrittenSize(onWrittenSize)
	e.engine.OnOpen(func(net.Conn) { engineHandoff() })
	raceReadHook(e.engine.Engine)
	if err := e.engine.Start(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln == nil {
		return nil, errors.New("ws engine started without a listener")
	}
	return e.ln.Addr(), nil
}

func (e *wsEngine) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s := e.l.s
	if s.closing.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if e.l.cfg.Path != "" && r.URL.Path != e.l.cfg.Path {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	wc, err := e.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered with an HTTP error
	}
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	req := &bus.HTTPRequest{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Host:   r.Host,
	}
	for name, values := range r.Header {
		for _, v := range values {
			req.Headers = append(req.Headers, bus.Header{Name: name, Value: v})
		}
	}
	c := s.newConn(e.l, wsTransport{wc: wc}, remote)
	wc.SetSession(c)
	s.register(c, bus.Event{Type: bus.EventConnect},
		bus.Event{Type: bus.EventWebSocketConnect, Request: req})
	engineHandoff()
}

func wsConn(wc *websocket.Conn) *conn {
	c, _ := wc.Session().(*conn)
	if c != nil {
		c.sync()
	}
	return c
}

func (e *wsEngine) onMessage(wc *websocket.Conn, mt websocket.MessageType, data []byte) {
	c := wsConn(wc)
	if c == nil {
		return
	}
	if mt == websocket.TextMessage && !utf8.Valid(data) {
		e.l.s.close(c, ReasonInvalidUTF8, false)
		return
	}
	e.l.s.received(c, data, mt == websocket.BinaryMessage)
}

// onPing queues the pong behind data already queued, so that the byte
// accounting of the connection stays exact.
func (e *wsEngine) onPing(wc *websocket.Conn, data string) {
	c := wsConn(wc)
	if c == nil {
		return
	}
	c.lastActiveMs.Store(time.Now().UnixMilli())
	sh := c.sh
	sh.mu.Lock()
	if c.state == stateOpen {
		if c.out == nil {
			c.out = sh.getBufLocked(len(data) + 2)
		}
		c.out = appendWSFrame(c.out, wsPong, []byte(data))
		sh.markDirtyLocked(c)
	}
	sh.mu.Unlock()
	sh.signal()
}

func (e *wsEngine) onClose(wc *websocket.Conn, err error) {
	c := wsConn(wc)
	if c == nil {
		return
	}
	e.l.s.closed(c, wsCloseReason(err))
}

// wsCloseReason maps the engine's close error to a CloseReason.
func wsCloseReason(err error) CloseReason {
	switch {
	case err == nil:
		return ReasonClientClosed
	case errors.Is(err, websocket.ErrMessageTooLarge), errors.Is(err, websocket.ErrControlMessageTooBig):
		return ReasonMessageTooLarge
	case errors.Is(err, websocket.ErrInvalidUtf8):
		return ReasonInvalidUTF8
	case isProtocolError(err):
		return ReasonProtocolError
	}
	// A close frame from the client, EOF, a reset: the client went away.
	return ReasonClientClosed
}

func isProtocolError(err error) bool {
	for _, target := range []error{
		websocket.ErrReserveBitSet, websocket.ErrInvalidControlFrame, websocket.ErrInvalidCloseCode,
		websocket.ErrInvalidFragmentMessage, websocket.ErrReservedMessageType,
		websocket.ErrFragmentsShouldNotHaveBinaryOrTextMessage, websocket.ErrControlMessageFragmented,
		websocket.ErrInvalidCompression,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// onWrittenSize keeps each connection's unsent byte count: the engine calls
// it, under its own lock, for every chunk it hands to the kernel.
func onWrittenSize(nc *nbio.Conn, _ []byte, n int) {
	switch v := nc.Session().(type) {
	case *websocket.Conn:
		if c := wsConn(v); c != nil {
			c.unsent.Add(-int64(n))
		}
	case *conn:
		v.unsent.Add(-int64(n))
	}
}

func (e *wsEngine) stopAccepting() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln != nil {
		_ = e.ln.Close()
	}
}

func (e *wsEngine) stop() {
	if e.engine != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.engine.Shutdown(ctx)
	}
}
