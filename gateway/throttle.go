package gateway

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit is a message budget: Messages per Per on average, with bursts
// of up to Burst messages (a token bucket, golang.org/x/time/rate). The
// zero value is no limit.
type RateLimit struct {
	// Messages is how many messages the budget allows per Per; 0 means
	// no limit.
	Messages int `yaml:"messages"`
	// Per is the interval of Messages; 0 means 1s.
	Per time.Duration `yaml:"per"`
	// Burst is how many messages may come at once after a quiet spell;
	// 0 means Messages.
	Burst int `yaml:"burst"`
	// Policy is what a message over the budget gets: "drop" (the message
	// is dropped, the connection stays), "close" (graceful close, code
	// 1008 "throttled", after the queued data), "force_close" (the socket
	// is closed at once, queued data dropped), "close_ip" or
	// "force_close_ip" (the same for every connection of the sender's
	// remote IP on this gateway). "" means drop.
	Policy string `yaml:"policy"`
}

// enabled reports whether r limits anything.
func (r RateLimit) enabled() bool { return r.Messages > 0 }

// newLimiter returns a full token bucket for r; r is enabled.
func (r RateLimit) newLimiter() *rate.Limiter {
	per := r.Per
	if per <= 0 {
		per = time.Second
	}
	burst := r.Burst
	if burst <= 0 {
		burst = r.Messages
	}
	return rate.NewLimiter(rate.Limit(float64(r.Messages)/per.Seconds()), burst)
}

// refill is how long an empty bucket of r takes to fill up again; r is
// enabled.
func (r RateLimit) refill() time.Duration {
	per := r.Per
	if per <= 0 {
		per = time.Second
	}
	burst := r.Burst
	if burst <= 0 {
		burst = r.Messages
	}
	return time.Duration(float64(per) * float64(burst) / float64(r.Messages))
}

// validate reports the first problem of r, naming key.
func (r RateLimit) validate(key string) error {
	switch {
	case r.Messages < 0:
		return fmt.Errorf("gateway: %s.messages: negative", key)
	case r.Per < 0:
		return fmt.Errorf("gateway: %s.per: negative", key)
	case r.Burst < 0:
		return fmt.Errorf("gateway: %s.burst: negative", key)
	}
	if _, ok := parsePolicy(r.Policy); !ok {
		return fmt.Errorf("gateway: %s.policy: %q is not drop, close, force_close, close_ip or force_close_ip", key, r.Policy)
	}
	return nil
}

// policy is a RateLimit.Policy.
type policy uint8

const (
	policyDrop policy = iota
	policyClose
	policyForceClose
	policyCloseIP
	policyForceCloseIP
	policyCount
)

var policyNames = [policyCount]string{"drop", "close", "force_close", "close_ip", "force_close_ip"}

func (p policy) String() string { return policyNames[p] }

// parsePolicy parses a RateLimit.Policy; "" is drop.
func parsePolicy(s string) (policy, bool) {
	if s == "" {
		return policyDrop, true
	}
	for p, name := range policyNames {
		if s == name {
			return policy(p), true
		}
	}
	return 0, false
}

// throttleText is the text of the close frame of a throttled client.
const throttleText = "throttled: message rate limit exceeded"

// admitMessage reports whether an inbound message of c is within its
// budgets: the connection's (its listener's RateLimit) first, then its
// remote IP's (Config.IPRateLimit, shared by all its connections on every
// listener). A message over a budget is counted in Stats.Throttled under
// the budget's policy, which is applied, and admitMessage returns false.
// It runs on c's read path, one call at a time per connection.
func (s *Server) admitMessage(c *conn) bool {
	q := quotaOf(c)
	if q == nil {
		return true // no limit configured
	}
	if c.closing() {
		return false // closed by a policy, or otherwise: discard
	}
	if r := c.l.cfg.RateLimit; r.enabled() {
		if q.msgs == nil {
			q.msgs = r.newLimiter() // lazily: idle connections hold none
		}
		if !q.msgs.Allow() {
			p, _ := parsePolicy(r.Policy)
			s.throttle(c, p)
			return false
		}
	}
	if q.ip != nil && q.ip.msgs != nil && !q.ip.msgs.Allow() {
		s.throttle(c, s.lim.ipPolicy)
		return false
	}
	return true
}

// throttle counts a message of c over a budget and applies p.
func (s *Server) throttle(c *conn, p policy) {
	s.stats.throttled[p].Add(1)
	switch p {
	case policyClose:
		s.closeWith(c, ReasonThrottled, ReasonThrottled.wsCode(), throttleText)
	case policyForceClose:
		s.close(c, ReasonThrottled, true)
	case policyCloseIP, policyForceCloseIP:
		n := s.closeIP(c.remote.Addr().Unmap(), p == policyForceCloseIP)
		s.log.Info("throttled: closing every connection of a remote IP",
			"remote", c.remote.Addr().Unmap().String(), "connections", n, "policy", p.String())
	}
}

// closeIP closes every open connection whose remote address is ip, on all
// shards and listeners, and returns how many it closed. It walks every
// connection: a policy of close_ip closes at least the connection that
// triggered it, so this runs at most once per connection.
func (s *Server) closeIP(ip netip.Addr, force bool) int {
	n := 0
	for _, sh := range s.shards {
		sh.mu.Lock()
		for _, c := range sh.conns {
			if c.state != stateOpen || c.remote.Addr().Unmap() != ip {
				continue
			}
			n++
			if force {
				sh.closeLocked(c, ReasonThrottled, true)
			} else {
				sh.closeWithLocked(c, ReasonThrottled, ReasonThrottled.wsCode(), throttleText)
			}
		}
		sh.mu.Unlock()
	}
	return n
}
