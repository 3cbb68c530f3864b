package tunclient

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// readLoop reads packets from l and handles them until l is closed:
// through an io_uring (ringLoop) for a TUN queue where the kernel has
// one and Config.NoRing is off, else a read and a write per packet.
func (e *Engine) readLoop(li int, l Link) {
	if d, ok := l.(*Device); ok && !e.cfg.NoRing {
		if r := d.startRing(); r != nil {
			e.ringLoop(li, r)
			return
		}
	}
	buf := make([]byte, 65536)
	var o outBuf
	for {
		n, err := l.ReadPacket(buf)
		if err != nil {
			return
		}
		e.mu.Lock()
		e.handle(&o, buf[:n])
		e.mu.Unlock()
		_ = o.flush(l) // a lost write is a lost packet: retransmission covers it
	}
}

// ringLoop is readLoop over a ring: each turn hands the kernel the
// packets the previous batch produced and takes every packet read
// meanwhile, in one system call when the engine is busy.
func (e *Engine) ringLoop(li int, r *ring) {
	defer r.release()
	var o outBuf
	var out [][]byte
	for {
		in, err := r.Exchange(out) // out's writes done when it returns
		if err != nil {
			return
		}
		o.buf, o.ends = o.buf[:0], o.ends[:0]
		e.mu.Lock()
		for _, p := range in {
			e.handle(&o, p)
		}
		e.setBehind(li, len(in) >= ringReads)
		e.mu.Unlock()
		out = out[:0]
		start := 0
		for _, end := range o.ends {
			out = append(out, o.buf[start:end])
			start = end
		}
	}
}

// setBehind records whether link li's reader took a full batch (the
// device had more queued: it is behind) or less (it caught up). Called
// with e.mu held.
func (e *Engine) setBehind(li int, full bool) {
	switch {
	case !full:
		e.behind[li] = 0
	case e.behind[li] == 0:
		e.behind[li] = e.now() | 1 // 0 means caught up
	}
}

// handle processes one packet from the kernel.
func (e *Engine) handle(o *outBuf, p []byte) {
	s, err := parseSegment(p)
	if err != nil {
		if !errors.Is(err, errNotTCP) {
			e.stats.BadPackets++
		}
		return
	}
	if s.src != e.srv || s.srcPort != e.sport {
		return
	}
	idx, ok := e.index(s.dst, s.dstPort)
	if !ok {
		return
	}
	c := &e.conns[idx]
	if s.ts.ok && c.flags&fTS != 0 && seqLE(s.seq, c.rcvNxt) {
		c.tsRecent = s.ts.val // RFC 7323 4.3: not from a segment past a gap
	}
	switch c.state {
	case stFree:
		return
	case stSynSent:
		e.handleSynSent(o, idx, c, &s)
		return
	case stDone, stFailed:
		// A FIN or data sent again after our last ACK was lost: acknowledge.
		if s.flags&flagRST == 0 && (len(s.payload) > 0 || s.flags&flagFIN != 0) {
			ack := s.seq + uint32(len(s.payload))
			if s.flags&flagFIN != 0 {
				ack++
			}
			e.emitAck(o, idx, c, c.sndNxt, ack, flagACK, nil)
		}
		return
	}
	if s.flags&flagRST != 0 {
		if seqLE(c.rcvNxt, s.seq) && seqLT(s.seq, c.rcvNxt+window) {
			e.reset(idx, c)
		}
		return
	}
	if s.flags&flagSYN != 0 { // our ACK of its SYN-ACK was lost
		e.stats.Dups++
		e.retransmit(o, idx, c)
		return
	}
	if s.flags&flagACK != 0 && seqLT(c.sndUna, s.ack) && seqLE(s.ack, c.sndNxt) {
		n := int(s.ack - c.sndUna)
		if n >= len(c.out) {
			c.out = nil // everything, and our FIN if the ack covers it
		} else {
			c.out = c.out[n:]
		}
		c.sndUna, c.tries, c.lastTx = s.ack, 0, e.now()
		if c.state == stFinWait && c.sndUna == c.sndNxt {
			e.finish(c)
			return
		}
	}
	fin := s.flags&flagFIN != 0
	data := s.payload
	if len(data) == 0 && !fin {
		return
	}
	if s.seq != c.rcvNxt {
		end := s.seq + uint32(len(data))
		if seqLT(s.seq, c.rcvNxt) && seqLT(c.rcvNxt, end) {
			data = data[c.rcvNxt-s.seq:] // partly new: take the new part
		} else if !(fin && end == c.rcvNxt && len(data) == 0) {
			// Old or ahead of a gap: acknowledge what we have; the
			// server sends the missing part again.
			e.stats.Dups++
			e.emit(o, idx, c, c.sndNxt, flagACK, nil)
			return
		}
	}
	c.rcvNxt += uint32(len(data))
	var reply []byte
	if len(data) > 0 {
		reply = e.consume(o, idx, c, data)
		if c.state >= stDone {
			return
		}
	}
	if fin {
		c.rcvNxt++
		e.ended(idx, c, &e.stats.ServerFINs, "FIN from the server without a close")
		if c.state == stUpgrade {
			e.fail(o, idx, c, false, "FIN before the 101")
			return
		}
		c.state, c.in = stFinWait, nil
		e.send(o, idx, c, reply, true)
		return
	}
	if len(reply) > 0 {
		e.send(o, idx, c, reply, false)
		return
	}
	e.emit(o, idx, c, c.sndNxt, flagACK, nil)
}

// handleSynSent handles a segment in answer to our SYN.
func (e *Engine) handleSynSent(o *outBuf, idx int, c *conn, s *segment) {
	if s.flags&flagACK == 0 || s.ack != c.sndNxt {
		return
	}
	if s.flags&flagRST != 0 {
		e.fail(o, idx, c, false, "connection refused (RST to the SYN)")
		return
	}
	if s.flags&flagSYN == 0 {
		return
	}
	c.rcvNxt, c.sndUna, c.state = s.seq+1, s.ack, stUpgrade
	if s.ts.ok && !e.cfg.NoTimestamps {
		c.flags |= fTS
		c.tsRecent = s.ts.val
		e.stats.Timestamps++
	}
	key := wsKey(e.seed, uint32(idx))
	req := appendUpgrade(make([]byte, 0, 192), e.host, e.cfg.Path, key[:])
	e.send(o, idx, c, req, false)
}

// reset ends a connection the server reset.
func (e *Engine) reset(idx int, c *conn) {
	if c.state == stUpgrade {
		var o outBuf
		e.fail(&o, idx, c, false, "reset before the 101")
		return
	}
	if c.flags&fInitiated != 0 {
		e.stats.CloseResets++
	}
	e.ended(idx, c, &e.stats.Resets, "reset by the server")
	e.setDone(c)
}

// finish ends a connection whose FINs are exchanged and acknowledged.
func (e *Engine) finish(c *conn) {
	if c.flags&fInitiated != 0 {
		e.stats.Closed++
	}
	e.setDone(c)
}

// consume parses the stream bytes data of client idx (after any kept
// partial bytes) and returns the bytes to send in answer.
func (e *Engine) consume(o *outBuf, idx int, c *conn, data []byte) []byte {
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	var reply []byte
	if c.state == stUpgrade {
		key := wsKey(e.seed, uint32(idx))
		n, err := parseUpgradeResponse(data, key[:])
		if errors.Is(err, errShort) {
			c.in = append(c.in[:0], data...)
			return nil
		}
		if err != nil {
			e.fail(o, idx, c, true, "%v", err)
			return nil
		}
		c.state = stOpen
		e.stats.Opened++
		e.stats.Live++
		e.stats.InFlight--
		data = data[n:]
	}
	for len(data) > 0 && c.state != stDone {
		f, n, err := parseFrame(data)
		if errors.Is(err, errShort) {
			break
		}
		if err != nil {
			e.ended(idx, c, &e.stats.Timeouts, "%v", err)
			e.emit(o, idx, c, c.sndNxt, flagRST|flagACK, nil)
			e.setDone(c)
			return nil
		}
		data = data[n:]
		switch f.opcode {
		case opPing:
			e.stats.Pings++
			reply = appendMasked(reply, opPong, e.rng.Uint32(), f.payload)
		case opClose:
			if c.flags&fCloseSent == 0 {
				code := 0
				if len(f.payload) >= 2 {
					code = int(binary.BigEndian.Uint16(f.payload))
				}
				if code == 1001 && c.flags&(fEnded|fInitiated) == 0 {
					e.stats.GoingAway++
				}
				e.ended(idx, c, &e.stats.ServerCloses, "close frame from the server, code %d %q", code, f.payload[min(2, len(f.payload)):])
				reply = appendMasked(reply, opClose, e.rng.Uint32(), f.payload[:min(2, len(f.payload))])
				c.flags |= fCloseSent
			}
			c.state = stClosing
			data = nil // nothing may follow a close frame
		case opPong:
		default:
			if f.fin {
				e.stats.Messages++
			}
		}
	}
	if len(data) > 0 {
		c.in = append(c.in[:0], data...)
	} else {
		c.in = nil
	}
	return reply
}

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xa
)

// wsGUID is the fixed string of the Sec-WebSocket-Accept computation.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxResponseHeader bounds the HTTP response to the upgrade: a longer
// header without its end fails the connection.
const maxResponseHeader = 4096

// maxFramePayload bounds one frame from the server: a longer one fails
// the connection (the clients of the idle workload expect pings and
// small messages).
const maxFramePayload = 1 << 20

// errShort means the bytes so far are the beginning of a response or
// frame: wait for more.
var errShort = errors.New("tunclient: incomplete")

// wsKey returns connection idx's Sec-WebSocket-Key (base64 of 16 bytes
// derived from seed and idx, so it need not be stored).
func wsKey(seed uint64, idx uint32) [24]byte {
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[0:8], splitmix(seed^uint64(idx)))
	binary.LittleEndian.PutUint64(raw[8:16], splitmix(seed+uint64(idx)<<1|1))
	var k [24]byte
	base64.StdEncoding.Encode(k[:], raw[:])
	return k
}

// wsAccept returns the Sec-WebSocket-Accept the server must answer to key.
func wsAccept(key []byte) [28]byte {
	h := sha1.New()
	h.Write(key)
	h.Write([]byte(wsGUID))
	var a [28]byte
	base64.StdEncoding.Encode(a[:], h.Sum(nil))
	return a
}

// splitmix is the SplitMix64 finaliser: a cheap, well-mixed hash.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// appendUpgrade appends the HTTP upgrade request of a client with key.
func appendUpgrade(b []byte, host, path string, key []byte) []byte {
	b = append(b, "GET "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	b = append(b, key...)
	return append(b, "\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
}

// parseUpgradeResponse parses the server's answer to the upgrade: it
// returns the length of the header (what follows are WebSocket frames)
// when it is a 101 with the Sec-WebSocket-Accept that key calls for,
// errShort when the header is not complete yet, or an error.
func parseUpgradeResponse(b []byte, key []byte) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > maxResponseHeader {
			return 0, fmt.Errorf("tunclient: upgrade response header longer than %d bytes", maxResponseHeader)
		}
		return 0, errShort
	}
	head := b[:end]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 101")) {
		return 0, fmt.Errorf("tunclient: upgrade answered %q", line)
	}
	want := wsAccept(key)
	found := false
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Accept")) {
			continue
		}
		if !bytes.Equal(bytes.TrimSpace(value), want[:]) {
			return 0, fmt.Errorf("tunclient: Sec-WebSocket-Accept %q, want %q", bytes.TrimSpace(value), want[:])
		}
		found = true
	}
	if !found {
		return 0, errors.New("tunclient: 101 without Sec-WebSocket-Accept")
	}
	return end + 4, nil
}

// frame is one parsed WebSocket frame from the server; payload aliases
// the input.
type frame struct {
	fin     bool
	opcode  uint8
	payload []byte
}

// parseFrame parses the first frame of b and returns it with its total
// length, errShort when b holds only its beginning, or an error for a
// frame a server must not send (masked, reserved bits, a long or
// fragmented control frame, over maxFramePayload).
func parseFrame(b []byte) (frame, int, error) {
	var f frame
	if len(b) < 2 {
		return f, 0, errShort
	}
	if b[0]&0x70 != 0 {
		return f, 0, errors.New("tunclient: frame with reserved bits set")
	}
	if b[1]&0x80 != 0 {
		return f, 0, errors.New("tunclient: masked frame from the server")
	}
	f.fin, f.opcode = b[0]&0x80 != 0, b[0]&0x0f
	n, h := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return f, 0, errShort
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, errShort
		}
		n, h = binary.BigEndian.Uint64(b[2:10]), 10
	}
	if f.opcode >= opClose && (n > 125 || !f.fin) {
		return f, 0, fmt.Errorf("tunclient: control frame %#x of %d bytes (final %v)", f.opcode, n, f.fin)
	}
	if n > maxFramePayload {
		return f, 0, fmt.Errorf("tunclient: frame of %d bytes (at most %d)", n, maxFramePayload)
	}
	if uint64(len(b)-h) < n {
		return f, 0, errShort
	}
	f.payload = b[h : h+int(n)]
	return f, h + int(n), nil
}

// appendMasked appends a final client frame (masked with mask, as a
// client must) of opcode with payload (at most 125 bytes: control frames).
func appendMasked(b []byte, opcode uint8, mask uint32, payload []byte) []byte {
	b = append(b, 0x80|opcode, 0x80|byte(len(payload)))
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], mask)
	b = append(b, m[:]...)
	for i, c := range payload {
		b = append(b, c^m[i&3])
	}
	return b
}
