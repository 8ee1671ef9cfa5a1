package appliance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// The rule for refused actions: every refused admin action is an audit
// record (outcome failure, the reason, and at the admin API the status and
// problem code), whether it was refused for its input (400), a missing
// object (404), the state of the data (409) or a role (403). An auditor
// sees attempts, not only changes, and "malformed" versus "unknown" is an
// accident of where the check sits. So that a flood of bad requests cannot
// grow the trail without bound, refusals are recorded at most once per
// actor, action and reason per refusalAuditEvery (actions and reasons are
// closed sets, so the growth per actor is bounded); the next such record
// says how many were left out. (Console sign-in failures follow the same
// once-a-minute rule.)
const refusalAuditEvery = time.Minute

// refusalLimiter remembers, per actor, action and reason, when a refusal was last
// recorded and how many have been left out since.
type refusalLimiter struct {
	mu   sync.Mutex
	last map[string]refusalState
}

type refusalState struct {
	at      time.Time
	skipped int
}

// allow reports whether a refusal of action by actorID at now is
// recorded, and how many were left out before it.
func (l *refusalLimiter) allow(actorID, action string, now time.Time) (bool, int) {
	key := actorID + "\x00" + action
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]refusalState{}
	}
	st, seen := l.last[key]
	if seen && now.Sub(st.at) < refusalAuditEvery && !now.Before(st.at) {
		st.skipped++
		l.last[key] = st
		return false, 0
	}
	if len(l.last) >= 4096 { // actors are API tokens and admins; prune the quiet ones
		for id, s := range l.last {
			if now.Sub(s.at) >= refusalAuditEvery {
				delete(l.last, id)
			}
		}
	}
	l.last[key] = refusalState{at: now}
	return true, st.skipped
}

// withSkipped notes in a refusal's detail how many refusals by the same
// actor were left out before it.
func withSkipped(detail string, skipped int) string {
	if skipped == 0 {
		return detail
	}
	note := fmt.Sprintf("%d earlier refusals like this one by this actor not recorded", skipped)
	if detail == "" {
		return note
	}
	return detail + "; " + note
}

// recordRefusal writes ev as a failure record unless the actor's refusals
// of that action are being left out; it marks the refusal as dealt with in
// ctx either way. key names the action (with the route, for a door's);
// the reason is added to it.
func (s *Service) recordRefusal(ctx context.Context, now time.Time, key string, ev AuditEvent) error {
	noteRefusal(ctx)
	ok, skipped := s.refusals.allow(ActorFrom(ctx).ID, key+"\x00"+ev.Reason, now)
	if !ok {
		return nil
	}
	ev.Outcome = OutcomeFailure
	ev.UserID, ev.Serial, ev.Target = boundText(ev.UserID, 128), boundText(ev.Serial, 128), boundText(ev.Target, 256)
	ev.Detail = withSkipped(boundText(ev.Detail, 512), skipped)
	return s.store.Update(ctx, func(tx Tx) error { return appendAudit(tx, now, ActorFrom(ctx), ev) })
}

// AuditRefusal records an action a door refused before the Service
// decided it (a body that does not parse, a role that may not call the
// route), under the same once-a-minute-per-actor rule as the Service's own
// refusals; Action, Target (a route pattern, say) and Reason name what is
// limited, so none of them may be text the client chose.
// The door must keep ev free of secrets and of unbounded text it was sent.
// Outcome is set to failure.
func (s *Service) AuditRefusal(ctx context.Context, ev AuditEvent) error {
	return s.recordRefusal(ctx, s.now().UTC(), ev.Action+" "+ev.Target, ev)
}

// boundText keeps a refused request's text (an id or serial the client
// sent in the path, say) printable and at most max bytes, so a record
// never carries what a flood chose to send.
func boundText(v string, max int) string {
	if len(v) <= max && !strings.ContainsFunc(v, notPrintable) {
		return v
	}
	var b strings.Builder
	for _, r := range v {
		if notPrintable(r) {
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > max-len("…") {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func notPrintable(r rune) bool { return r == utf8.RuneError || !unicode.IsPrint(r) }

type refusalNoteKey struct{}

// WithRefusalNote returns a context in which the Service notes that it
// dealt with the audit of a refusal (recorded it, or left it out under the
// rate rule); handled reports whether it did, so a door records a refusal
// only when the Service has not.
func WithRefusalNote(ctx context.Context) (_ context.Context, handled func() bool) {
	n := new(atomic.Bool)
	return context.WithValue(ctx, refusalNoteKey{}, n), n.Load
}

func noteRefusal(ctx context.Context) {
	if n, ok := ctx.Value(refusalNoteKey{}).(*atomic.Bool); ok {
		n.Store(true)
	}
}
