package main

import (
	"context"
	"log/slog"
	"time"

	"tokend/appliance"
)

// replacementSweepEvery is how often replaced tokens whose grace period
// has ended are retired. Verification already refuses them the moment the
// grace ends; the sweep unassigns and disables them so lists, reports and
// the limit show the truth.
const replacementSweepEvery = time.Minute

// sweepReplacementsOnce retires due replacements (on the runner).
func sweepReplacementsOnce(ctx context.Context, svc *appliance.Service, log *slog.Logger) {
	if n, err := svc.SweepReplacements(ctx); err != nil {
		log.Warn("retiring replaced tokens", "err", err)
	} else if n > 0 {
		log.Info("retired replaced tokens whose grace period ended", "count", n)
	}
}
