package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// apiClient calls a gatework HTTP API (or the bare server's imitation of
// sendToGroup). It is safe for concurrent use.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

// newAPIClient keeps up to conns keep-alive connections to addr.
func newAPIClient(addr, token string, conns int) *apiClient {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	return &apiClient{base: "http://" + addr + "/api/", token: token,
		hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (a *apiClient) close() { a.hc.CloseIdleConnections() }

// call posts body to /api/method and decodes the "result" into out (when
// not nil).
func (a *apiClient) call(ctx context.Context, method string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("load: encode %s: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+method, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("load: %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("load: %s: %w", method, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("load: %s: read answer: %w", method, err)
	}
	if resp.StatusCode == http.StatusServiceUnavailable && bytes.Contains(data, []byte(`"too_many_connections"`)) {
		return fmt.Errorf("load: %s: the node holds its maximum of HTTP connections: set its http.max_conns above --senders: %s",
			method, bytes.TrimSpace(data))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("load: %s: %s: %s", method, resp.Status, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("load: %s: decode answer: %w", method, err)
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return fmt.Errorf("load: %s: decode result: %w", method, err)
	}
	return nil
}

// joinAll puts the tool's connections (by their local addresses) into
// BenchGroup: it pages through getClientList, asks getClientInfo for each
// id's remote address and calls joinGroup for those that are ours. Other
// clients of the node are left alone. It returns how many joined.
func joinAll(ctx context.Context, a *apiClient, addrs []string, logf func(string, ...any)) (int, error) {
	ours := make(map[string]bool, len(addrs))
	for _, s := range addrs {
		ours[s] = true
	}
	var ids []string
	cursor := ""
	for {
		var page struct {
			Items      []string `json:"items"`
			NextCursor string   `json:"next_cursor"`
		}
		if err := a.call(ctx, "getClientList", map[string]any{"cursor": cursor, "limit": 10000}, &page); err != nil {
			return 0, err
		}
		ids = append(ids, page.Items...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	logf("node lists %d clients; joining ours to group %q", len(ids), BenchGroup)
	var (
		next, joined atomic.Int64
		wg           sync.WaitGroup
		errOnce      sync.Once
		firstErr     error
	)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				var info struct {
					IP   string `json:"remote_ip"`
					Port int    `json:"remote_port"`
				}
				err := a.call(ctx, "getClientInfo", map[string]any{"client": ids[i], "fields": 3}, &info)
				if err == nil && ours[net.JoinHostPort(info.IP, strconv.Itoa(info.Port))] {
					err = a.call(ctx, "joinGroup", map[string]any{"client": ids[i], "group": BenchGroup}, nil)
					if err == nil {
						joined.Add(1)
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	if n := int(joined.Load()); n < len(addrs) {
		return n, fmt.Errorf("load: only %d of %d connections joined %q (first error: %v)", n, len(addrs), BenchGroup, firstErr)
	}
	return len(addrs), nil
}

// waitBareCount waits (at most 5 s) until the bare server has registered
// n connections: a client sees its upgrade answered before the server's
// open callback has run, and a broadcast sent in between would miss it.
func waitBareCount(ctx context.Context, a *apiClient, n int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got int
		if err := a.call(ctx, "getClientCount", map[string]any{}, &got); err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("load: the bare server holds %d of %d connections", got, n)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

func runFanOut(ctx context.Context, cfg Config, r *Result, children []*child, addrs []string, logf func(string, ...any)) error {
	a := newAPIClient(cfg.HTTPAddr, cfg.Token, max(cfg.Senders, 16))
	defer a.close()
	r.Members = r.Connected
	r.Sender, r.Senders = "http", cfg.Senders
	if cfg.API != nil {
		r.Sender = "go-client"
	}
	if !cfg.Bare {
		n, err := joinAll(ctx, a, addrs, logf)
		if err != nil {
			return err
		}
		r.Members = n
	} else if err := waitBareCount(ctx, a, len(addrs)); err != nil {
		return err
	}
	for _, rate := range cfg.Rates {
		st, err := fanOutStep(ctx, cfg, a, children, rate, r.Members)
		if err != nil {
			return err
		}
		r.Steps = append(r.Steps, st)
		r.MaxDeliveriesPerSec = max(r.MaxDeliveriesPerSec, st.DeliveriesPerSec)
		logf("rate %d msg/s: sent %d (%.0f/s), %.0f deliveries/s, p50 %.2f ms p99 %.2f ms p999 %.2f ms, %d of %d delivered",
			rate, st.Sent, st.SendRate, st.DeliveriesPerSec, st.P50Ms, st.P99Ms, st.P999Ms, st.Delivered, st.Expected)
		if float64(st.Delivered) < 0.9*float64(st.Expected) || st.SendRate < 0.9*float64(rate) {
			logf("saturated at %d msg/s: stopping", rate)
			break
		}
	}
	if cfg.AtMax > 0 && r.MaxDeliveriesPerSec > 0 && r.Members > 0 {
		rate := max(int(cfg.AtMax*r.MaxDeliveriesPerSec/float64(r.Members)+0.5), 1)
		st, err := fanOutStep(ctx, cfg, a, children, rate, r.Members)
		if err != nil {
			return err
		}
		r.AtMax, r.AtMaxFraction = &st, cfg.AtMax
		logf("at %.0f %% of max (%d msg/s): %.0f deliveries/s, p50 %.2f ms p99 %.2f ms p999 %.2f ms, %d of %d delivered",
			cfg.AtMax*100, rate, st.DeliveriesPerSec, st.P50Ms, st.P99Ms, st.P999Ms, st.Delivered, st.Expected)
	}
	return nil
}

// fanOutStep sends stamped messages to the group at rate for cfg.Duration,
// waits for the deliveries to stop growing (at most 5 s), and reports.
func fanOutStep(ctx context.Context, cfg Config, a *apiClient, children []*child, rate, members int) (Step, error) {
	st := Step{Rate: rate}
	// Every child must have reset before the first message goes out.
	for _, c := range children {
		if err := c.send(childCmd{Cmd: "reset"}); err != nil {
			return st, fmt.Errorf("load: command child: %w", err)
		}
	}
	for _, c := range children {
		if _, err := c.recv(ctx, "reset", nil); err != nil {
			return st, err
		}
	}
	total := int(float64(rate) * cfg.Duration.Seconds())
	jobs := make(chan struct{}, 64)
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for range cfg.Senders {
		wg.Go(func() {
			for range jobs {
				var err error
				if cfg.API != nil {
					err = cfg.API.SendToGroup(ctx, []string{BenchGroup}, stamped(cfg.MsgSize))
				} else {
					err = a.call(ctx, "sendToGroup", map[string]any{"group": BenchGroup, "message": string(stamped(cfg.MsgSize))}, nil)
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				sent.Add(1)
			}
		})
	}
	t0 := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if d := time.Until(t0.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	sendTime := time.Since(t0)
	st.Sent, st.SendErrors = int(sent.Load()), int(failed.Load())
	st.SendRate = float64(st.Sent) / sendTime.Seconds()
	st.Expected = uint64(st.Sent) * uint64(members)

	// Poll until every delivery arrived or the count stops growing.
	var (
		h         *Histogram
		count     uint64
		lastGrow  time.Duration
		lastCount uint64
		stable    int
	)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		var elapsed time.Duration
		var err error
		h, count, _, elapsed, err = collect(ctx, children, childCmd{Cmd: "report"})
		if err != nil {
			return st, err
		}
		if count != lastCount {
			lastCount, lastGrow, stable = count, elapsed, 0
		} else {
			stable++
		}
		if count >= st.Expected || stable >= 3 {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return st, err
		}
	}
	st.Delivered = count
	st.DeliveriesPerSec = float64(count) / max(sendTime, lastGrow).Seconds()
	st.P50Ms, st.P99Ms, st.P999Ms = ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Quantile(0.999))
	return st, nil
}
