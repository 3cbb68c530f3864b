package tunclient

import (
	"encoding/binary"
	"errors"
)

// readLoop reads packets from l and handles them until l is closed.
func (e *Engine) readLoop(l Link) {
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
			a, p := e.addr(idx)
			o.buf = appendSegment(o.buf, a, e.srv, p, e.sport, c.sndNxt, ack, flagACK, window, 0, nil)
			o.ends = append(o.ends, len(o.buf))
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
