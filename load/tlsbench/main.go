// Command tlsbench measures a wss:// server from outside, the three TLS
// figures of docs/benchmarks.md ("TLS on crypto/tls"): the RSS a server
// process grows by per idle connection (-mode idle -pid P), WebSocket
// handshakes per second with a fixed number in flight, each closed at
// once (-mode churn), and the server's CPU per delivery of a 100-byte
// sendToAll over the HTTP API (-mode fanout -pid P). -mode serve runs the
// baseline: Go's net/http over crypto/tls with gorilla/websocket, a
// goroutine per connection. Clients are crypto/tls with Go's defaults
// (TLS 1.3 with a post-quantum key share; -tls12 for TLS 1.2) and do not
// verify the certificate.
package main

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// rssKiB returns the resident set of process pid.
func rssKiB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

// cpuTicks returns the user and system CPU time of process pid, in
// clock ticks (1/100 s).
func cpuTicks(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return u + st
}

// dialer is every client's.
var dialer = websocket.Dialer{
	TLSClientConfig:  &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a benchmark of the server's side
	HandshakeTimeout: 10 * time.Second,
}

// openN opens n WebSocket connections to url, conc at a time, and exits
// the program if one cannot be opened in a few tries.
func openN(url string, n, conc int) []*websocket.Conn {
	conns := make([]*websocket.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				for try := 0; ; try++ {
					c, _, err := dialer.Dial(url, nil)
					if err == nil {
						conns[i] = c
						break
					}
					if try > 5 {
						fmt.Fprintln(os.Stderr, "dial:", err)
						os.Exit(1)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return conns
}

func main() {
	mode := flag.String("mode", "idle", "idle, churn, fanout, serve")
	url := flag.String("url", "wss://127.0.0.1:18801/", "")
	pid := flag.Int("pid", 0, "server pid")
	n := flag.Int("n", 10000, "connections")
	conc := flag.Int("c", 50, "concurrency")
	dur := flag.Duration("d", 10*time.Second, "")
	api := flag.String("api", "http://127.0.0.1:18880/api/sendToAll", "")
	sends := flag.Int("sends", 200, "")
	addr := flag.String("addr", "127.0.0.1:18803", "serve address")
	cert := flag.String("cert", "", "")
	key := flag.String("key", "", "")
	tls12 := flag.Bool("tls12", false, "offer TLS 1.2 at most")
	hold := flag.Duration("hold", 0, "idle: keep the connections open this long after measuring (to profile the server)")
	flag.Parse()
	if *tls12 {
		dialer.TLSClientConfig.MaxVersion = tls.VersionTLS12
	}
	switch *mode {
	case "serve":
		up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
		srv := &http.Server{Addr: *addr, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := up.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						c.Close()
						return
					}
				}
			})}
		fmt.Println(srv.ListenAndServeTLS(*cert, *key))
	case "idle":
		before := rssKiB(*pid)
		t0 := time.Now()
		conns := openN(*url, *n, *conc)
		time.Sleep(3 * time.Second)
		after := rssKiB(*pid)
		fmt.Printf("idle: %d conns in %v, RSS %d -> %d KiB: %.2f KiB/conn\n", *n, time.Since(t0).Round(time.Millisecond), before, after, float64(after-before)/float64(*n))
		time.Sleep(*hold)
		for _, c := range conns {
			c.Close()
		}
	case "churn":
		var done, fails atomic.Int64
		stop := time.Now().Add(*dur)
		var wg sync.WaitGroup
		for range *conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					c, _, err := dialer.Dial(*url, nil)
					if err != nil {
						fails.Add(1)
						continue
					}
					c.Close()
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		fmt.Printf("churn: %.0f handshakes/s (%d failed)\n", float64(done.Load())/dur.Seconds(), fails.Load())
	case "fanout":
		conns := openN(*url, *n, *conc)
		var got atomic.Int64
		for _, c := range conns {
			go func() {
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						return
					}
					got.Add(1)
				}
			}()
		}
		time.Sleep(time.Second)
		msg := []byte(`{"message":"` + strings.Repeat("x", 100) + `"}`)
		c0 := cpuTicks(*pid)
		t0 := time.Now()
		for range *sends {
			resp, err := http.Post(*api, "application/json", bytes.NewReader(msg))
			if err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			resp.Body.Close()
			time.Sleep(10 * time.Millisecond)
		}
		want := int64(*n * *sends)
		for got.Load() < want && time.Since(t0) < 60*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		c1 := cpuTicks(*pid)
		fmt.Printf("fanout: %d/%d deliveries in %v, server CPU %.2f µs/delivery\n", got.Load(), want, time.Since(t0).Round(time.Millisecond),
			float64(c1-c0)*10000/float64(got.Load()))
		for _, c := range conns {
			c.Close()
		}
	}
}
