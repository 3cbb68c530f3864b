package api

import (
	"context"
	"fmt"

	"github.com/gatework/gatework/bus"
)

// This file holds the calls of the GatewayWorker / imi ports (docs/api.md).

// CloseClientWith closes client after the final message msg: msg is queued
// behind what is already queued (force drops that, not msg), flushed, then
// the connection closes gracefully. An empty msg is CloseClient. It
// returns once the gateway has started the close.
func (c *Client) CloseClientWith(ctx context.Context, client string, force bool, msg []byte) error {
	cmd := clientCmd(bus.OpCloseClient, client)
	cmd.Flag = force
	cmd.Data = msg
	return c.mutate(ctx, &cmd)
}

// CloseUID closes every connection bound to uid (non-empty), each after
// msg when msg is non-empty (see CloseClientWith); force drops data not yet
// sent. It goes to the uid's subject, so only gateways holding the uid get
// it, and returns once the bus has taken the command, not once gateways
// applied it.
func (c *Client) CloseUID(ctx context.Context, uid string, force bool, msg []byte) error {
	if uid == "" {
		return fmt.Errorf("%w: empty uid", ErrInvalidArgument)
	}
	cmd := bus.Command{Version: bus.Version, Op: bus.OpCloseUID, UIDs: []string{uid}, Arg: uid, Flag: force, Data: msg}
	return c.publish(ctx, c.subj.UID(uid), &cmd)
}
