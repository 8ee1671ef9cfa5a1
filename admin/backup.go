package admin

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// backupWriteTimeout replaces the listener's write timeout (sized for JSON
// answers) while a backup streams: a large store takes longer than that.
const backupWriteTimeout = 30 * time.Minute

// backup streams a consistent copy of the store (Options.Backup) as an
// attachment and audits it. Headers are sent before the copy begins, so a
// failure part-way cannot become a problem document: the connection is
// aborted instead, and the client sees a truncated transfer as an error
// rather than as a complete file.
func (s *Server) backup(c *gin.Context) {
	if s.backupFn == nil {
		writeProblem(c, NewProblem(http.StatusNotImplemented, CodeNotSupported,
			"this appliance's store cannot be copied while it runs; stop tokend and run `tokend backup`"))
		return
	}
	// Not every ResponseWriter supports deadlines (httptest's does not).
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(backupWriteTimeout))
	name := "tokend-" + s.now().UTC().Format("20060102T150405Z") + ".db"
	h := c.Writer.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("X-Content-Type-Options", "nosniff")
	c.Status(http.StatusOK)

	n, err := s.backupFn(c.Writer)
	// The copy is done (or failed) whatever the client does next: audit it
	// even if the request's context is cancelled, keeping its actor.
	actx := context.WithoutCancel(ctx(c))
	if err != nil {
		s.log.ErrorContext(ctx(c), "backup failed", "route", routeOf(c), "bytes", n, "err", err)
		if aerr := s.svc.Audit(actx, appliance.AuditEvent{Action: "store.backup", Outcome: appliance.OutcomeFailure,
			Reason: appliance.ReasonOf(err), Detail: fmt.Sprintf("failed after %d bytes", n)}); aerr != nil {
			s.log.ErrorContext(ctx(c), "audit of a failed backup", "err", aerr)
		}
		if !c.Writer.Written() {
			h.Del("Content-Disposition")
			s.WriteError(c, err)
			return
		}
		panic(http.ErrAbortHandler)
	}
	if err := s.svc.Audit(actx, appliance.AuditEvent{Action: "store.backup", Outcome: appliance.OutcomeSuccess,
		Detail: fmt.Sprintf("%d bytes", n)}); err != nil {
		// The copy has been delivered; only the record of it is missing.
		s.log.ErrorContext(ctx(c), "audit of a backup", "bytes", n, "err", err)
	}
}
