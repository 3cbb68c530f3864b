package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
	"github.com/gatework/gatework/internal/membership"
)

// Config defaults.
const (
	DefaultQueryTimeout   = 2 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// Config configures a Client. The zero value works.
type Config struct {
	// Prefix is the cluster's subject prefix; "" means bus.DefaultPrefix.
	Prefix string
	// QueryTimeout bounds a cluster-wide query: gateways that have not
	// answered by then are reported in Coverage.Missing. A context deadline
	// that comes earlier wins. 0 means DefaultQueryTimeout.
	QueryTimeout time.Duration
	// RequestTimeout bounds a call to one gateway (mutations, IsOnline,
	// GetClientInfo, GetSession); past it the call fails with ErrTimeout.
	// A context deadline that comes earlier wins. 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives warnings about gateways that answered a query with
	// an error or with garbage, and about tasks published again or given
	// up; nil discards them.
	Logger *slog.Logger
	// Tasks configures the task submitter (SubmitTask, TaskWait).
	Tasks TaskConfig
	// LocalOverloaded, when set, reports whether a gateway in the
	// caller's own process is overloaded (gateway.Server.Overloaded).
	// Sends are refused when it says so, as when a heartbeat does: it is
	// up to date where a heartbeat may lag behind a burst of sends. nil
	// means heartbeats only.
	LocalOverloaded func() bool
}

// Client implements API over the bus. It is safe for concurrent use by any
// number of goroutines; methods block at most until their context's
// deadline, QueryTimeout (queries) or RequestTimeout (one-gateway calls),
// and return ErrClosed after Close.
type Client struct {
	*core
	// scope are the listener names of OnListeners; nil: every listener.
	scope []string
}

// core is what a Client and its listener-scoped views share.
type core struct {
	nc      *nats.Conn
	ownConn bool
	subj    bus.Subjects
	cfg     Config
	log     *slog.Logger
	members *membership.Tracker

	bcastSubj string
	querySubj string
	cmdSubjs  sync.Map // gateway id -> Cmd subject, at most maxCachedSubjects entries
	cmdCached atomic.Int32

	ctx    context.Context // canceled by Close: releases calls in flight
	cancel context.CancelFunc
	closed atomic.Bool

	taskOnce sync.Once                 // makes the task submitter on first use
	taskErr  error                     // why it could not be made; set in taskOnce
	taskSub  atomic.Pointer[submitter] // the task submitter, once made
	// refused counts the sends refused with ErrOverloaded (Refused).
	refused atomic.Uint64
}

var _ API = (*Client)(nil)

// maxCachedSubjects bounds the per-gateway subject cache; past it subjects
// are built per call (one small allocation).
const maxCachedSubjects = 4096

// Dial connects to the bus described by opts and returns a Client that owns
// the connection: Close closes it.
func Dial(opts bus.Options, cfg Config) (*Client, error) {
	nc, err := bus.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("api: dial: %w", err)
	}
	c, err := New(nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c.ownConn = true
	return c, nil
}

// New returns a Client that borrows nc: Close does not close it. It
// subscribes to gateway heartbeats on nc right away; gateways are known
// from their first heartbeat (within a heartbeat interval) or from a query
// reply that names them. Replies come on nc's inbox prefix, which nc's
// user must be allowed to subscribe to: with the bus permissions of
// bus.Permissions, bus.Subjects.Inbox of its role (bus.RoleAPI for an API
// caller, bus.RoleWorker in a worker; bus.Options.InboxPrefix sets it).
func New(nc *nats.Conn, cfg Config) (*Client, error) {
	if nc == nil {
		return nil, errors.New("api: nil NATS connection")
	}
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if cfg.QueryTimeout < 0 || cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("%w: negative timeout", ErrInvalidArgument)
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Prefix = subj.Prefix
	members, err := membership.New(nc, membership.Config{Prefix: subj.Prefix, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	c := &Client{core: &core{
		nc:        nc,
		subj:      subj,
		cfg:       cfg,
		log:       cfg.Logger,
		members:   members,
		bcastSubj: subj.Broadcast(),
		querySubj: subj.Query(),
	}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close stops the Client: calls in flight return ErrClosed, later calls
// too. Messages already accepted by a send are flushed to the bus (for at
// most RequestTimeout) before a connection the Client owns is closed; a
// borrowed connection stays open. Close is idempotent.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.cancel()
	// No submitter can be made from now on (checkOpen): close the one
	// there is.
	c.taskOnce.Do(func() { c.taskErr = ErrClosed })
	if s := c.taskSub.Load(); s != nil {
		s.close()
	}
	err := c.members.Close()
	if c.ownConn {
		if ferr := c.nc.FlushTimeout(c.cfg.RequestTimeout); ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
			err = errors.Join(err, fmt.Errorf("api: flush: %w", ferr))
		}
		c.nc.Close()
	}
	return err
}

// Members returns the gateways the Client currently believes live, sorted.
func (c *Client) Members() []string { return c.members.Live() }

// GatewayError is an error a gateway reported for a command. It wraps
// ErrNotFound, ErrInvalidClient or ErrInvalidArgument when its Code is one
// of theirs, so callers can branch with errors.Is and still read the code.
type GatewayError struct {
	Gateway string // id of the gateway that answered
	Op      string // API method, lowerCamel
	Client  string // client id the command was about, if any
	Code    string // bus error code, e.g. "not_found", "internal"
	Message string // the gateway's explanation
}

// Error describes the failure.
func (e *GatewayError) Error() string {
	var b strings.Builder
	b.WriteString("api: ")
	b.WriteString(e.Op)
	if e.Client != "" {
		b.WriteString(" client ")
		b.WriteString(e.Client)
	}
	b.WriteString(": gateway ")
	b.WriteString(e.Gateway)
	b.WriteString(": ")
	b.WriteString(e.Code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the sentinel error matching Code, or nil.
func (e *GatewayError) Unwrap() error {
	switch e.Code {
	case bus.ErrCodeNotFound:
		return ErrNotFound
	case bus.ErrCodeInvalidClient:
		return ErrInvalidClient
	case bus.ErrCodeInvalidRequest:
		return ErrInvalidArgument
	case bus.ErrCodeOverloaded:
		return ErrOverloaded
	}
	return nil
}

// errGatewayGone marks a request that nobody received: the gateway that
// owned the client is gone, and so is the client.
var errGatewayGone = errors.New("gateway is not running")

// bufPool holds encoding buffers; buffers grown past maxPooledBuf are
// dropped rather than pooled, so a rare huge message does not pin memory.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledBuf = 64 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte, b []byte) {
	if cap(b) > maxPooledBuf {
		return
	}
	*bp = b[:0]
	bufPool.Put(bp)
}

// gatewayOf returns the gateway part of client id, or ErrInvalidClient
// naming the id.
func gatewayOf(id string) (string, error) {
	gw, err := clientid.Gateway(id)
	if err != nil {
		// clientid says `invalid client id "x": why`; keep the quoted id and why.
		why := strings.TrimPrefix(err.Error(), clientid.ErrInvalid.Error())
		return "", fmt.Errorf("%w%s", ErrInvalidClient, why)
	}
	return gw, nil
}

// cmdSubject returns the Cmd subject of gw, cached.
func (c *Client) cmdSubject(gw string) string {
	if s, ok := c.cmdSubjs.Load(gw); ok {
		return s.(string)
	}
	s := c.subj.Cmd(gw)
	if c.cmdCached.Load() < maxCachedSubjects {
		if _, loaded := c.cmdSubjs.LoadOrStore(strings.Clone(gw), s); !loaded {
			c.cmdCached.Add(1)
		}
	}
	return s
}

// checkOpen returns ErrClosed after Close, or the context's error.
func (c *Client) checkOpen(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	return nil
}

// publish encodes cmd and publishes it on subject without a reply subject.
func (c *Client) publish(ctx context.Context, subject string, cmd *bus.Command) error {
	if err := c.checkOpen(ctx); err != nil {
		return err
	}
	if err := c.checkLoad(cmd.Op); err != nil {
		return err
	}
	if err := c.applyScope(cmd); err != nil {
		return err
	}
	bp := getBuf()
	b := bus.AppendCommand((*bp)[:0], cmd)
	err := c.nc.Publish(subject, b)
	putBuf(bp, b)
	if err != nil {
		return c.busError(cmd.Op, err)
	}
	return nil
}

// checkLoad returns ErrOverloaded for a send (op a SendTo* op) while a
// live gateway says it is overloaded (bus.Heartbeat.Overloaded): such a
// send would only lengthen its backlog. Sends are refused on every
// gateway's behalf, since a routed send's gateways are not known here.
func (c *Client) checkLoad(op bus.Op) error {
	switch op {
	case bus.OpSendToClient, bus.OpSendToUID, bus.OpSendToGroup, bus.OpSendToAll:
		if (c.cfg.LocalOverloaded != nil && c.cfg.LocalOverloaded()) || c.members.Overloaded() {
			c.refused.Add(1)
			return fmt.Errorf("%w: %s", ErrOverloaded, op)
		}
	}
	return nil
}

// Refused returns the sends this Client refused with ErrOverloaded before
// they reached the bus.
func (c *Client) Refused() uint64 { return c.refused.Load() }

// busError wraps an error of the NATS connection.
func (c *Client) busError(op bus.Op, err error) error {
	switch {
	case c.closed.Load():
		return ErrClosed
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %s: message too large for the bus: %w", ErrInvalidArgument, op, err)
	}
	return fmt.Errorf("api: %s: %w", op, err)
}

// request sends cmd, which names one client, to the gateway that owns it
// and returns the gateway's successful Reply. Errors: ErrInvalidClient for
// a malformed id (before touching the bus), errGatewayGone when no gateway
// listens, ErrTimeout, ErrClosed, the context's error, or a *GatewayError.
func (c *Client) request(ctx context.Context, cmd *bus.Command) (*bus.Reply, error) {
	id := cmd.Clients[0]
	gw, err := gatewayOf(id)
	if err != nil {
		return nil, err
	}
	if err := c.checkOpen(ctx); err != nil {
		return nil, err
	}
	if err := c.applyScope(cmd); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	bp := getBuf()
	b := bus.AppendCommand((*bp)[:0], cmd)
	msg, err := c.nc.RequestWithContext(rctx, c.cmdSubject(gw), b)
	putBuf(bp, b)
	if err != nil {
		switch {
		case c.closed.Load():
			return nil, ErrClosed
		case errors.Is(err, nats.ErrNoResponders):
			return nil, errGatewayGone
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			return nil, fmt.Errorf("api: %s client %s: %w", cmd.Op, id, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			return nil, fmt.Errorf("%w: %s client %s (gateway %s)", ErrTimeout, cmd.Op, id, gw)
		}
		return nil, fmt.Errorf("api: %s client %s: %w", cmd.Op, id, err)
	}
	var rep bus.Reply
	if err := bus.DecodeReply(msg.Data, &rep); err != nil {
		return nil, fmt.Errorf("api: %s client %s: reply of gateway %s: %w", cmd.Op, id, gw, err)
	}
	if rep.ErrorCode != "" {
		return nil, &GatewayError{Gateway: gw, Op: cmd.Op.String(), Client: id, Code: rep.ErrorCode, Message: rep.Error}
	}
	return &rep, nil
}

// mutate runs a client-addressed command whose only answer is success; a
// gateway that is gone means the client is gone: ErrNotFound.
func (c *Client) mutate(ctx context.Context, cmd *bus.Command) error {
	_, err := c.request(ctx, cmd)
	if errors.Is(err, errGatewayGone) {
		return fmt.Errorf("%w: %s client %s: its gateway is not running", ErrNotFound, cmd.Op, cmd.Clients[0])
	}
	return err
}

// clientCmd returns a Command for op on one client.
func clientCmd(op bus.Op, client string) bus.Command {
	return bus.Command{Version: bus.Version, Op: op, Clients: []string{client}}
}

// SendToClient publishes msg to the gateway that owns client and returns
// once the bus has taken it; msg may be reused after the call. A client
// that is not connected is skipped silently; a malformed id gives
// ErrInvalidClient without touching the bus. A message over
// CheckedSendSize bytes waits for the gateway's answer instead, so that a
// refusal by the client's listener (a UDP client takes at most one
// datagram) is returned, as ErrInvalidArgument.
func (c *Client) SendToClient(ctx context.Context, client string, msg []byte) error {
	return c.sendClient(ctx, client, msg, false)
}

// sendClient is SendToClient, of a structured value's neutral form when
// structured.
func (c *Client) sendClient(ctx context.Context, client string, msg []byte, structured bool) error {
	gw, err := gatewayOf(client)
	if err != nil {
		return err
	}
	one := [1]string{client}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToClient, Clients: one[:], Data: msg, Structured: structured}
	if len(msg) > CheckedSendSize {
		if err := c.checkLoad(cmd.Op); err != nil {
			return err
		}
		_, err := c.request(ctx, &cmd)
		if errors.Is(err, errGatewayGone) {
			return nil // its gateway is gone, so is the client: skipped
		}
		return err
	}
	return c.publish(ctx, c.cmdSubject(gw), &cmd)
}

// CheckedSendSize is the size above which SendToClient waits for the
// gateway's answer: the largest UDP datagram (gateway.MaxDatagram, 65,507
// bytes). Smaller ones are not waited for: a listener that cannot frame
// one (a TCP length field too short for it) drops it.
const CheckedSendSize = 65507

// publishRouted publishes a send to names (uids or groups) where only the
// gateways holding them receive it: on subject(name) for one distinct
// name; for up to bus.MaxRoutedNames distinct names, on each name's
// subject with the whole list and one MsgID (a gateway that holds several
// of them delivers the first copy and drops the others, so each connection
// still gets the message once); for more names, once on the broadcast
// subject, which costs less than one publish per name.
func (c *Client) publishRouted(ctx context.Context, cmd *bus.Command, names []string, subject func(string) string) error {
	subjects := make([]string, 0, min(len(names), bus.MaxRoutedNames+1))
	for _, n := range names {
		s := subject(n)
		if !dup(subjects, s) {
			subjects = append(subjects, s)
			if len(subjects) > bus.MaxRoutedNames {
				return c.publish(ctx, c.bcastSubj, cmd)
			}
		}
	}
	if err := c.checkOpen(ctx); err != nil {
		return err
	}
	if err := c.checkLoad(cmd.Op); err != nil {
		return err
	}
	if err := c.applyScope(cmd); err != nil {
		return err
	}
	// Every routed send carries an id, also on one subject: a gateway
	// switching to a wildcard subscription (Config.MaxInterestSubjects)
	// may get it twice for a moment.
	for cmd.MsgID == 0 {
		cmd.MsgID = rand.Uint64()
	}
	bp := getBuf()
	b := bus.AppendCommand((*bp)[:0], cmd)
	defer putBuf(bp, b)
	for _, s := range subjects {
		if err := c.nc.Publish(s, b); err != nil {
			return c.busError(cmd.Op, err)
		}
	}
	return nil
}

func dup(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SendToUID publishes msg to every connection bound to one of uids, except
// the clients in without; it returns once the bus has taken it. uids must
// be non-empty and hold no empty uid (ErrInvalidArgument). Only gateways
// holding one of the uids receive it (see publishRouted).
func (c *Client) SendToUID(ctx context.Context, uids []string, msg []byte, without ...string) error {
	if err := checkNames("uid", uids); err != nil {
		return err
	}
	if err := checkClients(without); err != nil {
		return err
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToUID, UIDs: uids, Data: msg, Without: without}
	return c.publishRouted(ctx, &cmd, uids, c.subj.UID)
}

// SendToGroup publishes msg to every member of the groups (each connection
// once), except the clients in without; it returns once the bus has taken
// it. groups must be non-empty and hold no empty name (ErrInvalidArgument).
// Only gateways holding a member receive it (see publishRouted).
func (c *Client) SendToGroup(ctx context.Context, groups []string, msg []byte, without ...string) error {
	if err := checkNames("group", groups); err != nil {
		return err
	}
	if err := checkClients(without); err != nil {
		return err
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToGroup, Groups: groups, Data: msg, Without: without}
	return c.publishRouted(ctx, &cmd, groups, c.subj.Group)
}

// SendToAll publishes msg to every connection of every gateway, except the
// clients in without; it returns once the bus has taken it.
func (c *Client) SendToAll(ctx context.Context, msg []byte, without ...string) error {
	if err := checkClients(without); err != nil {
		return err
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToAll, Data: msg, Without: without}
	return c.publish(ctx, c.bcastSubj, &cmd)
}

// UnGroup dissolves group on every gateway; members stay connected. It
// returns once the bus has taken the command, not once gateways applied it.
// It goes to the group's subject: only gateways holding a member get it.
func (c *Client) UnGroup(ctx context.Context, group string) error {
	if group == "" {
		return fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpUngroup, Groups: []string{group}, Arg: group}
	return c.publish(ctx, c.subj.Group(group), &cmd)
}

// checkNames rejects an empty list and empty names.
func checkNames(what string, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no %s given", ErrInvalidArgument, what)
	}
	for i, n := range names {
		if n == "" {
			return fmt.Errorf("%w: %s %d of %d is empty", ErrInvalidArgument, what, i+1, len(names))
		}
	}
	return nil
}

// checkClients rejects malformed client ids.
func checkClients(ids []string) error {
	for _, id := range ids {
		if _, err := gatewayOf(id); err != nil {
			return fmt.Errorf("without: %w", err)
		}
	}
	return nil
}

// IsOnline reports whether client's connection is open, asking its gateway.
// A client whose gateway is gone is offline (false, nil).
func (c *Client) IsOnline(ctx context.Context, client string) (bool, error) {
	cmd := clientCmd(bus.OpIsOnline, client)
	rep, err := c.request(ctx, &cmd)
	switch {
	case errors.Is(err, errGatewayGone), errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return rep.Found, nil
}

// GetClientInfo returns the fields of client's connection selected by
// fields (0 means FieldAll); fields not asked for are left zero.
func (c *Client) GetClientInfo(ctx context.Context, client string, fields Fields) (ClientInfo, error) {
	if fields == 0 {
		fields = FieldAll
	}
	cmd := clientCmd(bus.OpClientInfo, client)
	cmd.Fields = uint32(fields)
	rep, err := c.request(ctx, &cmd)
	if errors.Is(err, errGatewayGone) {
		return ClientInfo{}, fmt.Errorf("%w: client %s: its gateway is not running", ErrNotFound, client)
	}
	if err != nil {
		return ClientInfo{}, err
	}
	st := rep.State
	if st == nil {
		st = &bus.ClientState{}
	}
	var info ClientInfo
	if fields&FieldRemoteIP != 0 {
		info.RemoteIP = st.RemoteIP
	}
	if fields&FieldRemotePort != 0 {
		info.RemotePort = int(st.RemotePort)
	}
	if fields&FieldUID != 0 {
		uid := st.UID
		info.UID = &uid
	}
	if fields&FieldSession != 0 {
		if info.Session, err = decodeSession(st.Session); err != nil {
			return ClientInfo{}, fmt.Errorf("api: getClientInfo client %s: %w", client, err)
		}
	}
	if fields&FieldGroups != 0 {
		info.Groups = append(make([]string, 0, len(st.Groups)), st.Groups...)
	}
	if fields&FieldSystem != 0 {
		gw := st.Gateway
		if gw == "" {
			gw = client[:clientid.GatewayLen]
		}
		info.System = &SystemInfo{
			Listener:    st.Listener,
			Protocol:    st.Protocol,
			Gateway:     gw,
			ConnectedAt: unixMs(st.ConnectedUnixMs),
			LastActive:  unixMs(st.LastActiveUnixMs),
			BytesIn:     st.BytesIn,
			BytesOut:    st.BytesOut,
			MessagesIn:  st.MessagesIn,
			MessagesOut: st.MessagesOut,
			Protected:   st.Protected,
		}
	}
	return info, nil
}

// unixMs converts milliseconds since the epoch to a time; 0 is the zero time.
func unixMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// CloseClient closes client's connection; force drops data not yet sent,
// otherwise the gateway flushes it first. It returns once the gateway has
// started the close.
func (c *Client) CloseClient(ctx context.Context, client string, force bool) error {
	cmd := clientCmd(bus.OpCloseClient, client)
	cmd.Flag = force
	return c.mutate(ctx, &cmd)
}

// BindUID binds client to uid (non-empty), replacing any previous uid.
func (c *Client) BindUID(ctx context.Context, client, uid string) error {
	if uid == "" {
		return fmt.Errorf("%w: empty uid", ErrInvalidArgument)
	}
	cmd := clientCmd(bus.OpBindUID, client)
	cmd.Arg = uid
	return c.mutate(ctx, &cmd)
}

// UnbindUID removes client's uid, if any.
func (c *Client) UnbindUID(ctx context.Context, client string) error {
	cmd := clientCmd(bus.OpUnbindUID, client)
	return c.mutate(ctx, &cmd)
}

// JoinGroup adds client to group (non-empty).
func (c *Client) JoinGroup(ctx context.Context, client, group string) error {
	return c.groupOp(ctx, bus.OpJoinGroup, client, group)
}

// LeaveGroup removes client from group (non-empty).
func (c *Client) LeaveGroup(ctx context.Context, client, group string) error {
	return c.groupOp(ctx, bus.OpLeaveGroup, client, group)
}

func (c *Client) groupOp(ctx context.Context, op bus.Op, client, group string) error {
	if group == "" {
		return fmt.Errorf("%w: empty group", ErrInvalidArgument)
	}
	cmd := clientCmd(op, client)
	cmd.Arg = group
	return c.mutate(ctx, &cmd)
}

// SetSession replaces client's session with s (nil means empty). Every
// value must encode to JSON (else ErrInvalidArgument).
func (c *Client) SetSession(ctx context.Context, client string, s Session) error {
	return c.sessionOp(ctx, bus.OpSetSession, client, s)
}

// UpdateSession merges s into client's session, key by key (shallow).
func (c *Client) UpdateSession(ctx context.Context, client string, s Session) error {
	return c.sessionOp(ctx, bus.OpUpdateSession, client, s)
}

func (c *Client) sessionOp(ctx context.Context, op bus.Op, client string, s Session) error {
	data, err := encodeSession(s)
	if err != nil {
		return fmt.Errorf("%s client %s: %w", op, client, err)
	}
	cmd := clientCmd(op, client)
	cmd.Data = data
	return c.mutate(ctx, &cmd)
}

// Protect exempts client from its listener's pings and idle timeout (on),
// or ends the exemption (off; the client then counts as active at that
// moment, so its idle timeout starts over). It returns once the gateway
// has applied it.
func (c *Client) Protect(ctx context.Context, client string, on bool) error {
	cmd := clientCmd(bus.OpProtect, client)
	cmd.Flag = on
	return c.mutate(ctx, &cmd)
}

// PauseRecv stops reading client until ResumeRecv; it returns once the
// gateway has applied it. See API.PauseRecv.
func (c *Client) PauseRecv(ctx context.Context, client string) error {
	cmd := clientCmd(bus.OpPauseRecv, client)
	return c.mutate(ctx, &cmd)
}

// ResumeRecv reads client again, from where PauseRecv stopped it.
func (c *Client) ResumeRecv(ctx context.Context, client string) error {
	cmd := clientCmd(bus.OpResumeRecv, client)
	return c.mutate(ctx, &cmd)
}

// Confirm starts reading a client of a delay_receive listener.
func (c *Client) Confirm(ctx context.Context, client string) error {
	cmd := clientCmd(bus.OpConfirm, client)
	return c.mutate(ctx, &cmd)
}

// SetBinary makes every later send to client a binary frame (on), or ends
// that (off). See API.SetBinary.
func (c *Client) SetBinary(ctx context.Context, client string, on bool) error {
	cmd := clientCmd(bus.OpSetBinary, client)
	cmd.Flag = on
	return c.mutate(ctx, &cmd)
}

// DeleteSession clears client's session.
func (c *Client) DeleteSession(ctx context.Context, client string) error {
	cmd := clientCmd(bus.OpDeleteSession, client)
	return c.mutate(ctx, &cmd)
}

// GetSession returns client's session: a new map owned by the caller,
// empty (not nil) when there is none. Numbers decode as float64.
func (c *Client) GetSession(ctx context.Context, client string) (Session, error) {
	cmd := clientCmd(bus.OpGetSession, client)
	rep, err := c.request(ctx, &cmd)
	if errors.Is(err, errGatewayGone) {
		return nil, fmt.Errorf("%w: client %s: its gateway is not running", ErrNotFound, client)
	}
	if err != nil {
		return nil, err
	}
	s, err := decodeSession(rep.Session)
	if err != nil {
		return nil, fmt.Errorf("api: getSession client %s: %w", client, err)
	}
	return s, nil
}
