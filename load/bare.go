package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

// BareConfig configures a bare server.
type BareConfig struct {
	// WSAddr and HTTPAddr are the listen addresses (127.0.0.0/8; port 0
	// picks one); defaults 127.0.0.1:0.
	WSAddr, HTTPAddr string
	// Shards is the number of goroutines a broadcast is split over, each
	// writing its share of the connections; 0 means 1 (the naive loop).
	// runtime.GOMAXPROCS(0) uses every core, as gatework's fan-out does.
	Shards int
	// Coalesce makes a broadcast take every message queued at that moment
	// (up to 256), encode their frames once into one buffer and write that
	// buffer to each connection in a single write: the fewest syscalls a
	// fan-out can make, as gatework's per-connection coalescing aims for.
	// false writes each message to each connection on its own.
	Coalesce bool
	// Logger receives errors; nil means slog.Default().
	Logger *slog.Logger
}

// Bare is the baseline the load tool compares gatework with: a minimal
// WebSocket server on nbio's epoll engine (nbhttp/websocket, handlers run
// inline on the event loop) with no framework. It echoes every message
// to its sender (the echo and churn workloads), and its HTTP endpoint
// POST /api/sendToGroup (the same JSON as gatework's, the group is
// ignored) broadcasts the message to every connection, one write per
// connection, from one goroutine or split over BareConfig.Shards
// goroutines (the fan-out workload; connections need no join). Its methods are safe for concurrent use.
type Bare struct {
	engine   *nbhttp.Engine
	http     *http.Server
	wsAddr   net.Addr
	hAddr    net.Addr
	log      *slog.Logger
	shards   int
	coalesce bool

	mu    sync.Mutex
	conns map[*websocket.Conn]struct{}

	queue chan []byte // messages to broadcast; senders block when full
	done  chan struct{}
	wg    sync.WaitGroup
}

// bareIdle is how long the bare server lets a connection stay silent.
const bareIdle = time.Hour

// StartBare starts a bare server; Close stops it.
func StartBare(cfg BareConfig) (*Bare, error) {
	if cfg.WSAddr == "" {
		cfg.WSAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	for _, a := range []string{cfg.WSAddr, cfg.HTTPAddr} {
		if err := checkLoopback(a); err != nil {
			return nil, err
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Bare{log: cfg.Logger, shards: max(cfg.Shards, 1), coalesce: cfg.Coalesce, conns: map[*websocket.Conn]struct{}{},
		queue: make(chan []byte, 1024), done: make(chan struct{})}

	u := websocket.NewUpgrader()
	u.KeepaliveTime = bareIdle
	u.OnOpen(func(c *websocket.Conn) {
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
	})
	u.OnClose(func(c *websocket.Conn, _ error) {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
	})
	u.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
		_ = c.WriteMessage(mt, data)
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, err := u.Upgrade(w, r, nil); err != nil {
			b.log.Debug("bare: upgrade", "err", err)
		}
	})
	var lnMu sync.Mutex
	b.engine = nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{cfg.WSAddr},
		Handler:                 mux,
		KeepaliveTime:           bareIdle,
		ReleaseWebsocketPayload: true,
		ServerExecutor:          func(f func()) { f() },
		Listen: func(network, addr string) (net.Listener, error) {
			// Plain TCP, as the gateway listens (Go would choose MPTCP).
			var lc net.ListenConfig
			lc.SetMultipathTCP(false)
			ln, err := lc.Listen(context.Background(), network, addr)
			if err == nil {
				lnMu.Lock()
				b.wsAddr = ln.Addr()
				lnMu.Unlock()
			}
			return ln, err
		},
	})
	if err := b.engine.Start(); err != nil {
		return nil, fmt.Errorf("load: start bare websocket engine: %w", err)
	}

	hln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		b.engine.Stop()
		return nil, fmt.Errorf("load: bare http listen: %w", err)
	}
	b.hAddr = hln.Addr()
	api := http.NewServeMux()
	api.HandleFunc("POST /api/sendToGroup", b.serveSend)
	api.HandleFunc("POST /api/sendToAll", b.serveSend)
	api.HandleFunc("POST /api/getClientCount", func(w http.ResponseWriter, _ *http.Request) {
		b.mu.Lock()
		n := len(b.conns)
		b.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]int{"result": n})
	})
	b.http = &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	b.wg.Go(func() {
		if err := b.http.Serve(hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("bare: http", "err", err)
		}
	})
	b.wg.Go(b.broadcastLoop)
	return b, nil
}

// WSAddr is the WebSocket listener's address.
func (b *Bare) WSAddr() net.Addr { return b.wsAddr }

// HTTPAddr is the HTTP endpoint's address.
func (b *Bare) HTTPAddr() net.Addr { return b.hAddr }

// Close stops the listeners, closes every connection and waits for the
// server's goroutines.
func (b *Bare) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.http.Shutdown(ctx)
	close(b.done)
	b.engine.Stop()
	b.wg.Wait()
	return err
}

func (b *Bare) serveSend(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Message string `json:"message"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&p); err != nil {
		http.Error(w, `{"error":{"code":"invalid_json","message":"bad body"}}`, http.StatusBadRequest)
		return
	}
	select {
	case b.queue <- []byte(p.Message):
	case <-r.Context().Done():
		return
	case <-b.done:
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"result":null}` + "\n"))
}

// maxCoalesce is the most queued messages one coalesced broadcast takes.
const maxCoalesce = 256

// broadcastLoop writes every queued message to every connection, the
// connections split over b.shards goroutines; it waits for one broadcast
// to be written everywhere before it takes the next. With b.coalesce, one
// broadcast is every message queued at that moment, written as one buffer.
func (b *Bare) broadcastLoop() {
	var conns []*websocket.Conn
	var wg sync.WaitGroup
	var frames []byte
	for {
		var msg []byte
		select {
		case msg = <-b.queue:
		case <-b.done:
			return
		}
		if b.coalesce {
			frames = appendTextFrame(frames[:0], msg)
		drain:
			for range maxCoalesce - 1 {
				select {
				case m := <-b.queue:
					frames = appendTextFrame(frames, m)
				default:
					break drain
				}
			}
		}
		conns = conns[:0]
		b.mu.Lock()
		for c := range b.conns {
			conns = append(conns, c)
		}
		b.mu.Unlock()
		per := max((len(conns)+b.shards-1)/b.shards, 1)
		for lo := 0; lo < len(conns); lo += per {
			part := conns[lo:min(lo+per, len(conns))]
			wg.Go(func() {
				for _, c := range part {
					if b.coalesce {
						_, _ = c.Conn.Write(frames) // the raw socket: frames are ready
					} else {
						_ = c.WriteMessage(websocket.TextMessage, msg)
					}
				}
			})
		}
		wg.Wait()
	}
}

// appendTextFrame appends msg as one unmasked, final text frame.
func appendTextFrame(dst, msg []byte) []byte {
	n := len(msg)
	switch {
	case n < 126:
		dst = append(dst, 0x81, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x81, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x81, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, msg...)
}
