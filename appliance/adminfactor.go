package appliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A token that is an admin's console second factor is managed by super
// admins only: whoever can re-distribute, re-assign, re-PIN or resync it, or
// hand its user an emergency code, can sign in as that admin. Every state
// change of such a token (and emergency access or unlocking of its user) is
// refused to other roles inside the transaction that would make the
// change, so an admin given that token concurrently is covered too.
//
// The admins are found by scanning adm/ in that transaction rather than by
// an index keyed by serial: there are a handful of admins, the check runs
// only on admin-initiated changes (never on authentication or
// provisioning), and a scan needs no backfill for stores written before
// the rule existed.

// ErrForbidden is the class of actions the actor's role may not perform.
var ErrForbidden = errors.New("forbidden")

// AdminFactorReason prefixes the Reason of audit records about a token that
// is an admin's second factor; the admin names follow, comma-separated.
const AdminFactorReason = "admin_second_factor"

// AdminFactorError refuses a change of a token that is an admin's console
// second factor to an actor who is not a super admin. Its text names the
// token, never the admin (the help desk sees it); the audit record does.
type AdminFactorError struct {
	Serial string
	admins []string
}

func (e *AdminFactorError) Error() string {
	return fmt.Sprintf("token %s is an administrator's console second factor: only a superadmin may change it or its user's access", e.Serial)
}

func (e *AdminFactorError) Is(target error) bool { return target == ErrForbidden }

// adminFactors maps each second-factor serial to the admins using it.
func adminFactors(tx Tx) (map[string][]string, error) {
	accs, err := adminAccounts(tx)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, a := range accs {
		if a.SecondFactorSerial != "" {
			out[a.SecondFactorSerial] = append(out[a.SecondFactorSerial], a.Name)
		}
	}
	return out, nil
}

// adminAccounts reads every admin account inside tx.
func adminAccounts(tx Tx) ([]AdminAccount, error) {
	kvs, err := tx.Scan([]byte(pfxAdmin), nil, 0)
	if err != nil {
		return nil, err
	}
	out := make([]AdminAccount, len(kvs))
	for i, kv := range kvs {
		if err := decodeRecord(tx, kv.Value, &out[i]); err != nil {
			return nil, fmt.Errorf("decode %q: %w", kv.Key, err)
		}
	}
	return out, nil
}

// guardedToken reads the token a change is about, names its user in ev and
// refuses the change (guardAdminFactor) when the token is an admin's second
// factor and actor is no super admin. It runs inside the changing
// transaction.
func guardedToken(tx Tx, actor Actor, ev *AuditEvent, serial string) (*Token, error) {
	t, err := getToken(tx, serial)
	if err != nil {
		return nil, err
	}
	ev.UserID = t.UserID
	if err := guardAdminFactor(tx, actor, ev, serial); err != nil {
		return nil, err
	}
	return t, nil
}

// guardAdminFactor refuses (AdminFactorError) a change of any of serials
// that is an admin's second factor unless actor is a super admin; when the
// super admin goes ahead, it names the admins in ev.Reason so the success
// record tells them. It runs inside the changing transaction.
func guardAdminFactor(tx Tx, actor Actor, ev *AuditEvent, serials ...string) error {
	factors, err := adminFactors(tx)
	if err != nil || len(factors) == 0 {
		return err
	}
	var admins []string
	first := ""
	for _, sn := range serials {
		if names := factors[sn]; len(names) > 0 {
			if first == "" {
				first = sn
			}
			admins = append(admins, names...)
		}
	}
	if len(admins) == 0 {
		return nil
	}
	slices.Sort(admins)
	admins = slices.Compact(admins)
	if actor.Role != RoleSuperAdmin {
		return &AdminFactorError{Serial: first, admins: admins}
	}
	ev.Reason = AdminFactorReason + ":" + strings.Join(admins, ",")
	return nil
}

// guardUserAdminFactor is guardAdminFactor over every token the user holds,
// for actions on the user (emergency access, unlock) that stand in for or
// free the way to their tokens.
func guardUserAdminFactor(tx Tx, actor Actor, ev *AuditEvent, userID string) error {
	toks, err := userTokens(tx, userID)
	if err != nil {
		return err
	}
	serials := make([]string, len(toks))
	for i := range toks {
		serials[i] = toks[i].Serial
	}
	return guardAdminFactor(tx, actor, ev, serials...)
}

// changeGuarded is change for actions guarded by guardAdminFactor: a
// refusal is audited (change audits only domain errors) with the admins it
// protected, so they see the attempt.
func (s *Service) changeGuarded(ctx context.Context, ev AuditEvent, fn func(tx Tx, now time.Time, ev *AuditEvent) error) error {
	err := s.change(ctx, ev, fn)
	s.auditAdminFactorRefusal(ctx, ev, err)
	return err
}

// auditAdminFactorRefusal records err if it is an AdminFactorError.
func (s *Service) auditAdminFactorRefusal(ctx context.Context, ev AuditEvent, err error) {
	var afe *AdminFactorError
	if !errors.As(err, &afe) {
		return
	}
	// Recorded under the shared refusal rule (once a minute per actor,
	// action and protected admins, the next record counting those left
	// out), so a help-desk account retrying cannot grow the trail without
	// bound; the protected admins still see the attempts and their number.
	ev.Reason = AdminFactorReason + ":" + strings.Join(afe.admins, ",")
	if ev.Serial == "" {
		ev.Serial = afe.Serial
	}
	if aerr := s.recordRefusal(ctx, s.now().UTC(), ev.Action, ev); aerr != nil {
		s.log.Error("audit write failed", "action", ev.Action, "err", aerr)
	}
}

// GuardAdminFactor refuses (AdminFactorError, audited as action) anyone but
// a super admin when serial is an admin's second factor. Doors call it
// before handing out what they hold themselves rather than the Service: the
// admin API's QR code of an outstanding activation code carries the code.
func (s *Service) GuardAdminFactor(ctx context.Context, serial, action string) error {
	actor := ActorFrom(ctx)
	ev := AuditEvent{Action: action, Serial: serial}
	err := s.store.View(ctx, func(tx Tx) error {
		e := ev
		return guardAdminFactor(tx, actor, &e, serial)
	})
	s.auditAdminFactorRefusal(ctx, ev, err)
	return err
}

// markAdminFactors sets AdminSecondFactor on each token that is an admin's
// second factor, for display.
func markAdminFactors(tx Tx, toks []Token) error {
	factors, err := adminFactors(tx)
	if err != nil || len(factors) == 0 {
		return err
	}
	for i := range toks {
		toks[i].AdminSecondFactor = len(factors[toks[i].Serial]) > 0
	}
	return nil
}

// importFactors returns the second-factor tokens an import by actor must
// skip rather than overwrite (nil when it overwrites nothing or is a super
// admin's): an overwrite replaces the seed with one from the file.
func importFactors(tx Tx, onDuplicate string, actor Actor) (map[string][]string, error) {
	if onDuplicate != OnDuplicateOverwrite || actor.Role == RoleSuperAdmin {
		return nil, nil
	}
	return adminFactors(tx)
}
