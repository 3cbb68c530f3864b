package master_test

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/gatework/gatework/master"
)

// TestSignalsWait: SIGUSR1 calls reload and Wait goes on; SIGTERM ends
// Wait; a cancelled context ends it too.
func TestSignalsWait(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Run("reload then stop", func(t *testing.T) {
		sigs := master.NotifySignals()
		defer sigs.Stop()
		reloaded := make(chan struct{}, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			sigs.Wait(context.Background(), log, func() { reloaded <- struct{}{} })
		}()
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		select {
		case <-reloaded:
		case <-time.After(5 * time.Second):
			t.Fatal("SIGUSR1 did not reload")
		}
		select {
		case <-done:
			t.Fatal("Wait returned on SIGUSR1")
		default:
		}
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("SIGTERM did not end Wait")
		}
	})
	t.Run("context", func(t *testing.T) {
		sigs := master.NotifySignals()
		defer sigs.Stop()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan struct{})
		go func() { defer close(done); sigs.Wait(ctx, log, func() {}) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a done context did not end Wait")
		}
	})
}
