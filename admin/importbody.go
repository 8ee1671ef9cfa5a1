package admin

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// Import upload pacing. The listener's ReadTimeout (30 s) suits JSON
// requests, not a 64 MiB token file on a slow link; an import body instead
// gets DefaultImportGrace plus the time its bytes so far take at
// DefaultImportMinRate. A client that keeps up that average rate may take
// as long as the file needs; one that stalls is cut off, and since the body
// is spooled before any row is imported, a cut body imports nothing.
const (
	DefaultImportMinRate = 16 << 10 // bytes per second
	DefaultImportGrace   = 30 * time.Second
	// importCommitTimeout is how long the answer may wait for the rows to
	// be committed once the body is in (the listener's WriteTimeout counts
	// from the request headers, so a long upload would use it all up).
	importCommitTimeout = 30 * time.Minute
)

// pacedBody moves the connection's read deadline along with the bytes
// received: the body must keep arriving at rate bytes/s on average after
// grace. It also moves the write deadline so the answer can still be sent
// after the commit.
type pacedBody struct {
	r     io.Reader
	rc    *http.ResponseController
	now   func() time.Time
	start time.Time
	grace time.Duration
	rate  int64
	n     int64
	done  bool
}

func newPacedBody(w http.ResponseWriter, r io.Reader, rate int64, grace time.Duration, now func() time.Time) *pacedBody {
	return &pacedBody{r: r, rc: http.NewResponseController(w), now: now, start: now(), grace: grace, rate: rate}
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if !b.done {
		dl := b.start.Add(b.grace + time.Duration(b.n)*time.Second/time.Duration(b.rate))
		// Not every ResponseWriter supports deadlines (httptest's does
		// not); there the listener's own timeouts apply.
		_ = b.rc.SetReadDeadline(dl)
		_ = b.rc.SetWriteDeadline(dl.Add(importCommitTimeout))
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if errors.Is(err, io.EOF) && !b.done {
		// The body is in: no deadline on the idle connection while the
		// rows are committed, and the answer has its full time.
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
		_ = b.rc.SetWriteDeadline(b.now().Add(importCommitTimeout))
	}
	return n, err
}
