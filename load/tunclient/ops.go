package tunclient

import (
	"context"
	"fmt"
	"time"
)

// Open starts the handshakes of every client, paced at Config.Rate, and
// returns when each has opened or failed, or when ctx ends (the error
// then says how far it got). Call it once, after Start.
func (e *Engine) Open(ctx context.Context) error {
	n := len(e.conns)
	rate := e.cfg.Rate
	maxInFlight := 1024
	if rate > 0 {
		maxInFlight = max(int(rate/10), 2)
	}
	var o outBuf
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last, tokens := time.Now(), 1.0
	next := 0
	for next < n {
		now := time.Now()
		if rate > 0 {
			tokens = min(tokens+rate*now.Sub(last).Seconds(), float64(maxInFlight))
		} else {
			tokens = float64(n)
		}
		last = now
		e.mu.Lock()
		for next < n && tokens >= 1 && e.stats.InFlight < maxInFlight {
			c := &e.conns[next]
			iss := e.rng.Uint32()
			c.sndUna, c.sndNxt, c.state, c.lastTx = iss, iss+1, stSynSent, e.now()
			e.emit(&o, next, c, iss, flagSYN, nil)
			e.stats.Started++
			e.stats.InFlight++
			next++
			tokens--
		}
		e.mu.Unlock()
		if err := o.flush(e.links[0]); err != nil {
			return fmt.Errorf("tunclient: open: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunclient: open stopped after %d of %d SYNs: %w", next, n, context.Cause(ctx))
		case <-tick.C:
		}
	}
	for {
		st := e.Stats()
		if st.InFlight == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunclient: open stopped with %d handshakes in flight: %w", st.InFlight, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// Close closes every open client in order, paced at rate per second (0
// or negative: unpaced): a close frame with code 1000, then the server's
// close frame and FIN are answered with our FIN. It returns when every
// such close completed or its connection ended otherwise, or when ctx
// ends.
func (e *Engine) Close(ctx context.Context, rate float64) error {
	var o outBuf
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last, tokens := time.Now(), 1.0
	next := 0
	for next < len(e.conns) {
		now := time.Now()
		if rate > 0 {
			tokens = min(tokens+rate*now.Sub(last).Seconds(), rate)
		} else {
			tokens = float64(len(e.conns))
		}
		last = now
		e.mu.Lock()
		for ; next < len(e.conns) && tokens >= 1; next++ {
			c := &e.conns[next]
			if c.state != stOpen {
				continue
			}
			c.flags |= fInitiated | fCloseSent
			c.state = stClosing
			e.closing++
			e.send(&o, next, c, appendMasked(nil, opClose, e.rng.Uint32(), closeCode), false)
			tokens--
		}
		e.mu.Unlock()
		if err := o.flush(e.links[0]); err != nil {
			return fmt.Errorf("tunclient: close: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunclient: close stopped after %d of %d clients: %w", next, len(e.conns), context.Cause(ctx))
		case <-tick.C:
		}
	}
	for {
		e.mu.Lock()
		left := e.closing
		e.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunclient: %d closes not completed: %w", left, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// tickLoop retransmits what is unacknowledged for too long, in chunks so
// the readers are not held up by a scan of every client.
func (e *Engine) tickLoop() {
	period := min(max(e.cfg.RTO/2, 10*time.Millisecond), 500*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	var o outBuf
	const chunk = 8192
	perTick := max(int(e.cfg.RetransmitRate*period.Seconds()), 1)
	for {
		select {
		case <-e.stopTick:
			return
		case <-t.C:
		}
		budget := perTick
		for lo := 0; lo < len(e.conns); lo += chunk {
			e.mu.Lock()
			e.scan(&o, lo, min(lo+chunk, len(e.conns)), &budget)
			e.mu.Unlock()
			_ = o.flush(e.links[0]) // lost again: the next scan retries
		}
	}
}

// scan retransmits for clients lo to hi-1, at most *budget segments, and
// resets closes that waited longer than Config.CloseWait.
func (e *Engine) scan(o *outBuf, lo, hi int, budget *int) {
	now := e.now()
	rto := uint32(e.cfg.RTO / time.Millisecond)
	closeWait := uint32(e.cfg.CloseWait / time.Millisecond)
	for i := lo; i < hi; i++ {
		c := &e.conns[i]
		switch c.state {
		case stSynSent, stUpgrade, stOpen, stClosing, stFinWait:
		default:
			continue
		}
		if c.state != stSynSent && c.sndUna == c.sndNxt {
			if c.state == stClosing && now-c.lastTx >= closeWait {
				e.stats.CloseTimeouts++
				e.emit(o, i, c, c.sndNxt, flagRST|flagACK, nil)
				e.ended(i, c, &e.stats.Timeouts, "no close from the server")
				e.setDone(c)
			}
			continue
		}
		if now-c.lastTx < rto<<min(c.tries, 5) {
			continue
		}
		if int(c.tries) >= e.cfg.MaxRetries {
			switch c.state {
			case stSynSent, stUpgrade:
				e.fail(o, i, c, c.state == stUpgrade, "handshake given up after %d retransmissions", c.tries)
			default:
				e.ended(i, c, &e.stats.Timeouts, "given up after %d retransmissions", c.tries)
				e.emit(o, i, c, c.sndNxt, flagRST|flagACK, nil)
				e.setDone(c)
			}
			continue
		}
		if *budget <= 0 {
			continue // due: sent at a later tick
		}
		*budget--
		c.tries++
		c.lastTx = now
		e.retransmit(o, i, c)
	}
}
