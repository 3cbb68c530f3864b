package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/lesismal/nbio"

	"github.com/gatework/gatework/bus"
)

// wsEngine serves WebSocket clients (RFC 6455) on nbio's event loop, with
// the protocol rules (handshake, header checks, masking, close codes) from
// github.com/gobwas/ws. The gateway assembles frames itself so that it can
// hold no buffer while a connection is idle, deliver empty messages, and
// close the way RFC 6455 §7 asks (close frame, then FIN, then wait).
type wsEngine struct {
	nbioEngine

	// Sockets whose handshake is not complete, with their deadlines
	// (unix nanoseconds); one sweeper closes the late ones.
	hsMu    sync.Mutex
	pending map[*wsTransport]int64
	// upgrades are the upgrade requests waiting for the workers
	// (ListenerConfig.UpgradeHook; see upgrade.go). Guarded by hsMu.
	upgrades map[*wsTransport]*pendingUpgrade
	hsQuit   chan struct{}
	hsDone   chan struct{}
	// hsIdle (guarded by hsMu): the sweeper waits on hsWake, pending and
	// upgrades having been empty; open wakes it.
	hsIdle bool
	hsWake chan struct{}
}

func newWSEngine(l *listener) *wsEngine {
	return &wsEngine{nbioEngine: nbioEngine{l: l}, pending: make(map[*wsTransport]int64),
		upgrades: make(map[*wsTransport]*pendingUpgrade), hsWake: make(chan struct{}, 1)}
}

func (e *wsEngine) start() (net.Addr, error) {
	addr, err := e.nbioEngine.start(e)
	if err != nil {
		return nil, err
	}
	e.hsQuit, e.hsDone = make(chan struct{}), make(chan struct{})
	go e.sweepHandshakes()
	return addr, nil
}

func (e *wsEngine) stop() {
	if e.hsQuit != nil {
		select {
		case <-e.hsQuit:
		default:
			close(e.hsQuit)
			<-e.hsDone
		}
	}
	e.nbioEngine.stop()
}

// sweepHandshakes closes, twice a second, the sockets whose upgrade did
// not complete within HandshakeTimeout, and answers 503 to the upgrades
// that waited UpgradeTimeout for the workers (checked four times per
// UpgradeTimeout when that is shorter than 2 s). While no handshake or
// upgrade is pending it does not tick: it waits for open to wake it.
func (e *wsEngine) sweepHandshakes() {
	defer close(e.hsDone)
	every := 500 * time.Millisecond
	if e.l.cfg.UpgradeHook {
		every = max(min(every, e.l.cfg.UpgradeTimeout/4), 10*time.Millisecond)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-e.hsQuit:
			return
		case <-e.hsWake:
			tick.Reset(every)
		case now := <-tick.C:
			var late []*wsTransport
			e.hsMu.Lock()
			for t, deadline := range e.pending {
				if now.UnixNano() >= deadline {
					late = append(late, t)
					delete(e.pending, t)
				}
			}
			if len(e.pending) == 0 && len(e.upgrades) == 0 {
				e.hsIdle = true
				tick.Stop()
			}
			e.hsMu.Unlock()
			e.countTimeouts(late)
			for _, t := range late {
				_ = t.nc.Close()
			}
			e.sweepUpgrades(now)
		}
	}
}

// handshakeDone stops watching t's handshake.
func (e *wsEngine) handshakeDone(t *wsTransport) {
	e.hsMu.Lock()
	delete(e.pending, t)
	e.hsMu.Unlock()
}

// maxHandshake bounds the HTTP upgrade request.
const maxHandshake = 8 << 10

// wsTransport is a WebSocket connection's socket and read state. in and
// msg hold bytes only while a handshake, a frame or a fragmented message is
// incomplete; an idle connection holds neither.
type wsTransport struct {
	sock
	in    []byte    // unparsed bytes: the handshake, or a partial frame
	msg   []byte    // the fragments of a message being assembled
	msgOp ws.OpCode // opcode of that message; 0 when none
	dead  bool      // a protocol error was answered; discard the rest
	// deflate: permessage-deflate was negotiated (RSV1 marks a compressed
	// message); msgZ: the message being assembled is compressed.
	deflate bool
	msgZ    bool
	// hold is the upgrade hook's state (holdNone, holdWaiting,
	// holdEnded: see upgrade.go), set off the event loop too.
	hold atomic.Uint32
}

func (e *wsEngine) open(nc *nbio.Conn) {
	if e.l.s.closing.Load() {
		_ = nc.Close()
		return
	}
	q, refused := e.l.s.admitSocket(nc)
	if refused != refusedNone {
		e.refuseOpen(nc, refused)
		return
	}
	t := &wsTransport{sock: newSock(nc, q)}
	e.hsMu.Lock()
	e.pending[t] = time.Now().Add(e.l.s.cfg.HandshakeTimeout).UnixNano()
	if e.hsIdle {
		e.hsIdle = false
		select {
		case e.hsWake <- struct{}{}:
		default:
		}
	}
	e.hsMu.Unlock()
	setTransport(nc, t)
}

func (e *wsEngine) data(nc *nbio.Conn, data []byte) {
	t, _ := transportOf(nc).(*wsTransport)
	if t == nil {
		return
	}
	if t.dead {
		return // a protocol error or a refused handshake was answered
	}
	if t.c == nil {
		e.handshake(t, data)
		return
	}
	if h := t.hold.Load(); h != holdNone {
		if h == holdWaiting {
			e.earlyData(t)
		}
		return
	}
	t.c.sync()
	if t.c.closing() {
		return // lingering after a close: discard
	}
	if t.c.rx.Load() != 0 && e.l.s.holdInput(t.c, data) {
		return // paused or not confirmed yet
	}
	t.c.lastActiveMs.Store(nowMs()) // any inbound byte counts (idle timeout)
	e.frames(t, data)
}

func (e *wsEngine) closed(nc *nbio.Conn, err error) {
	t, _ := transportOf(nc).(*wsTransport)
	if t == nil {
		return
	}
	if t.c == nil {
		e.handshakeDone(t)
		return
	}
	if t.hold.Load() != holdNone && e.upgradeClosed(t) {
		return // never joined the hub
	}
	e.l.s.closed(t.c, ReasonClientClosed)
}

// handshake collects the upgrade request and answers it. A request that
// arrives whole in one read (the usual case) is parsed where it lies,
// without a copy.
func (e *wsEngine) handshake(t *wsTransport, data []byte) {
	buf := data
	if len(t.in) > 0 {
		t.in = append(t.in, data...)
		buf = t.in
	}
	end := bytes.Index(buf, headEnd)
	if end < 0 {
		if len(t.in) == 0 {
			t.in = bytes.Clone(data) // the rest comes in a later read
		}
		if len(t.in) > maxHandshake {
			e.refuse(t, []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"), refusedBadHandshake)
		}
		return
	}
	head, rest := buf[:end+4], buf[end+4:]
	p := hsParsers.Get().(*hsParser)
	defer p.release()
	// No worker has OnWebSocketConnect: no request to collect and no event
	// (closeevents.go); a held upgrade always has both.
	noReq := !e.l.cfg.UpgradeHook && e.l.s.closeSkip.skipWSConnect()
	if !noReq {
		p.req = &bus.HTTPRequest{Method: "GET"}
	}
	p.path, p.origins = e.l.cfg.Path, e.l.cfg.Origins
	var offer *deflateOffer
	if e.l.cfg.Compression.Enabled {
		offer = &deflateOffer{cfg: e.l.cfg.Compression}
		p.u.Negotiate = offer.negotiate
	}
	p.rd.Reset(head)
	_, err := p.u.Upgrade(p)
	if err != nil {
		why := refusedBadHandshake
		if p.badOrigin {
			why = refusedOrigin
		}
		e.refuse(t, p.resp.Bytes(), why)
		return
	}
	req := p.req
	if e.l.cfg.UpgradeHook {
		e.holdUpgrade(t, p.resp.Bytes(), rest, req, offer) // copies what it keeps
		return
	}
	e.handshakeDone(t)
	s := e.l.s
	c := s.newConn(e.l, t, remoteAddrPort(t.nc))
	if offer != nil && offer.serverBits != 0 {
		t.deflate = true
		c.deflate = offer.serverBits
	}
	var leftover []byte
	if len(rest) > 0 {
		leftover = bytes.Clone(rest)
	}
	t.in = nil
	if e.l.cfg.DelayReceive {
		s.holdNew(c)
	}
	// The 101 goes out as c joins its shard, under the shard's lock: a
	// query answered after the client saw the 101 counts c, and no frame
	// queued for c can reach the socket before the 101.
	preamble := func() {
		_ = t.write(p.resp.Bytes()) // the engine copies what it cannot write now
		t.c = c
	}
	if noReq {
		s.register(c, preamble, bus.Event{Type: bus.EventConnect})
	} else {
		s.register(c, preamble, bus.Event{Type: bus.EventConnect}, bus.Event{Type: bus.EventWebSocketConnect, Request: req})
	}
	if len(leftover) > 0 && (c.rx.Load() == 0 || !s.holdInput(c, leftover)) {
		e.frames(t, leftover)
	}
}

// headEnd ends an HTTP request's head.
var headEnd = []byte("\r\n\r\n")

// remoteAddrPort returns the peer address of a socket.
func remoteAddrPort(nc *nbio.Conn) netip.AddrPort {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	return ap
}

// hsParser parses one upgrade request with gobwas/ws and collects what the
// connect event carries. Parsers are pooled: their upgrader's callbacks
// are bound once, not made per handshake, and the answer's buffer is
// reused.
type hsParser struct {
	u         ws.Upgrader
	rd        bytes.Reader // the request's head
	resp      bytes.Buffer // the answer: 101, or the refusal
	req       *bus.HTTPRequest
	path      string   // the listener's path; "" for any
	origins   []string // the listener's allowed origins; nil for any
	badOrigin bool
}

var hsParsers = sync.Pool{New: func() any {
	p := &hsParser{}
	p.u = ws.Upgrader{OnRequest: p.onRequest, OnHost: p.onHost, OnHeader: p.onHeader}
	return p
}}

func (p *hsParser) Read(b []byte) (int, error)  { return p.rd.Read(b) }
func (p *hsParser) Write(b []byte) (int, error) { return p.resp.Write(b) }

// release returns p to the pool, holding nothing of the request.
func (p *hsParser) release() {
	p.req, p.path, p.origins, p.badOrigin, p.u.Negotiate = nil, "", nil, false, nil
	p.rd.Reset(nil)
	if p.resp.Cap() > maxHandshake {
		p.resp = bytes.Buffer{}
	}
	p.resp.Reset()
	hsParsers.Put(p)
}

func (p *hsParser) onRequest(uri []byte) error {
	if p.req == nil { // nobody wants the request: only the path check
		path, _, _ := bytes.Cut(uri, []byte{'?'})
		if p.path != "" && string(path) != p.path {
			return ws.RejectConnectionError(ws.RejectionStatus(404), ws.RejectionReason("no WebSocket endpoint at this path"))
		}
		return nil
	}
	path, query, _ := strings.Cut(string(uri), "?")
	p.req.Path, p.req.Query = path, query
	if p.path != "" && path != p.path {
		return ws.RejectConnectionError(ws.RejectionStatus(404), ws.RejectionReason("no WebSocket endpoint at this path"))
	}
	return nil
}

func (p *hsParser) onHost(host []byte) error {
	if p.req != nil {
		p.req.Host = string(host)
	}
	return nil
}

func (p *hsParser) onHeader(key, value []byte) error {
	if len(p.origins) > 0 && strings.EqualFold(string(key), "Origin") && !originAllowed(p.origins, string(value)) {
		p.badOrigin = true
		return ws.RejectConnectionError(ws.RejectionStatus(403), ws.RejectionReason("origin not allowed"))
	}
	if p.req != nil && len(p.req.Headers) < 256 {
		p.req.Headers = append(p.req.Headers, bus.Header{Name: string(key), Value: string(value)})
	}
	return nil
}

// refuse answers a failed handshake with resp, counts it under why and
// closes the socket. The request was read whole, so the close sends FIN,
// not a reset, and the client reads the answer.
func (e *wsEngine) refuse(t *wsTransport, resp []byte, why refusal) {
	if len(resp) == 0 { // gobwas/ws answers nothing to a malformed request line
		resp = []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
	}
	e.l.s.stats.refused[why].Add(1)
	e.handshakeDone(t)
	t.dead = true
	t.in = nil
	_ = t.write(resp)
	_ = t.nc.Close()
}

// frames parses and handles every complete frame in t.in + data, keeping
// an incomplete tail.
func (e *wsEngine) frames(t *wsTransport, data []byte) {
	buf := data
	if len(t.in) > 0 {
		t.in = append(t.in, data...)
		buf = t.in
	}
	for len(buf) > 0 && !t.dead {
		h, hlen, ok := parseHeader(buf)
		if !ok {
			break
		}
		if reason, msg := e.checkHeader(t, h); reason != 0 {
			e.fail(t, reason, msg)
			return
		}
		if int64(len(buf)-hlen) < h.Length {
			break // wait for the rest of the payload
		}
		payload := buf[hlen : hlen+int(h.Length)]
		ws.Cipher(payload, h.Mask, 0)
		buf = buf[hlen+int(h.Length):]
		if !e.frame(t, h, payload) {
			return
		}
	}
	switch {
	case t.dead || len(buf) == 0:
		t.in = nil
	case len(t.in) > 0:
		// buf is a tail of t.in: move it to the front.
		n := copy(t.in, buf)
		t.in = t.in[:n]
	default:
		t.in = bytes.Clone(buf)
	}
}

// parseHeader decodes a frame header from the front of b.
func parseHeader(b []byte) (h ws.Header, n int, ok bool) {
	if len(b) < 2 {
		return h, 0, false
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, false
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, false
		}
		v := binary.BigEndian.Uint64(b[2:10])
		if v > 1<<62 {
			v = 1 << 62 // invalid (MSB set); rejected as too large
		}
		h.Length = int64(v)
		n = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, false
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, true
}

// checkHeader applies RFC 6455's rules and the size limit to a header
// before its payload is buffered.
func (e *wsEngine) checkHeader(t *wsTransport, h ws.Header) (CloseReason, string) {
	st := ws.StateServerSide
	if t.msgOp != 0 {
		st = st.Set(ws.StateFragmented)
	}
	if t.deflate {
		st = st.Set(ws.StateExtended)
	}
	if err := ws.CheckHeader(h, st); err != nil {
		return ReasonProtocolError, err.Error()
	}
	if h.Rsv != 0 { // permessage-deflate negotiated (else CheckHeader refused it)
		switch {
		case h.Rsv != rsv1:
			return ReasonProtocolError, "RSV2 or RSV3 set"
		case h.OpCode.IsControl():
			return ReasonProtocolError, "compressed control frame"
		case h.OpCode == ws.OpContinuation:
			return ReasonProtocolError, "RSV1 on a continuation frame"
		}
	}
	if !h.OpCode.IsControl() && int64(len(t.msg))+h.Length > int64(e.l.cfg.MaxMessage) {
		return ReasonMessageTooLarge, "message too large"
	}
	return 0, ""
}

// frame handles one complete, unmasked frame. It returns false when the
// connection is being closed.
func (e *wsEngine) frame(t *wsTransport, h ws.Header, payload []byte) bool {
	s, c := e.l.s, t.c
	switch h.OpCode {
	case ws.OpPing:
		c.lastActiveMs.Store(nowMs())
		s.queueControl(c, wsPong, payload)
		return true
	case ws.OpPong:
		c.lastActiveMs.Store(nowMs())
		return true
	case ws.OpClose:
		return e.peerClose(t, payload)
	}
	// A data frame: start or continue a message.
	if h.OpCode != ws.OpContinuation {
		t.msgOp = h.OpCode
		t.msgZ = h.Rsv == rsv1
	}
	if !h.Fin {
		t.msg = append(t.msg, payload...)
		return true
	}
	msg := payload
	if len(t.msg) > 0 {
		t.msg = append(t.msg, payload...)
		msg = t.msg
	}
	op := t.msgOp
	t.msgOp = 0
	if t.msgZ {
		t.msgZ = false
		return e.inflated(t, op, msg)
	}
	if op == ws.OpText && !utf8.Valid(msg) {
		t.msg = nil
		e.fail(t, ReasonInvalidUTF8, "invalid UTF-8 in a text message")
		return false
	}
	s.received(c, msg, op == ws.OpBinary)
	t.msg = nil
	return true
}

// rsv1 is the RSV1 bit in ws.Header.Rsv: a compressed message (RFC 7692).
const rsv1 = 0x4

// inflated delivers a compressed message: inflated (at most max_message
// bytes, else 1009), malformed deflate data answered with 1007, text
// checked for UTF-8 after inflating. The inflate buffer is pooled, so an
// idle connection holds none. It returns false when closing.
func (e *wsEngine) inflated(t *wsTransport, op ws.OpCode, compressed []byte) bool {
	bp := inflateBufs.Get().(*[]byte)
	msg, err := inflateMessage(*bp, compressed, e.l.cfg.MaxMessage)
	t.msg = nil
	defer func() {
		if cap(msg) <= maxFreeCap {
			*bp = msg[:0]
			inflateBufs.Put(bp)
		}
	}()
	switch {
	case errors.Is(err, errInflateTooLarge):
		e.fail(t, ReasonMessageTooLarge, "inflated message too large")
		return false
	case err != nil:
		t.dead = true
		e.l.s.closeWith(t.c, ReasonProtocolError, 1007, "malformed compressed data")
		return false
	case op == ws.OpText && !utf8.Valid(msg):
		e.fail(t, ReasonInvalidUTF8, "invalid UTF-8 in a text message")
		return false
	}
	e.l.s.received(t.c, msg, op == ws.OpBinary)
	return true
}

// inflateBufs pools the buffers messages are inflated into.
var inflateBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// peerClose answers the client's close frame and closes.
func (e *wsEngine) peerClose(t *wsTransport, payload []byte) bool {
	code := 1000
	switch {
	case len(payload) == 1:
		e.fail(t, ReasonProtocolError, "close frame payload of 1 byte")
		return false
	case len(payload) >= 2:
		sc, reason := ws.ParseCloseFrameData(payload)
		if err := ws.CheckCloseFrameData(sc, reason); err != nil {
			if errors.Is(err, ws.ErrProtocolInvalidUTF8) {
				e.fail(t, ReasonInvalidUTF8, err.Error())
			} else {
				e.fail(t, ReasonProtocolError, err.Error())
			}
			return false
		}
		code = int(sc)
	}
	t.dead = true
	t.msg = nil
	e.l.s.closeWith(t.c, ReasonClientClosed, code, "")
	return false
}

// fail answers a protocol violation with a close frame and closes.
func (e *wsEngine) fail(t *wsTransport, reason CloseReason, text string) {
	t.dead = true
	t.msg = nil
	e.l.s.closeWith(t.c, reason, reason.wsCode(), text)
}
