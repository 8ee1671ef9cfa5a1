package appliance

import (
	"context"
	"fmt"
	"time"
)

// Managing admin accounts: reset, self-service change, disable, delete.
// Two rules keep the console administrable: the last enabled superadmin
// can be neither disabled nor deleted, and an admin acting in the console
// cannot disable or delete their own account (another superadmin or the
// command line can).

// ErrLastSuperAdmin refuses to disable or delete the last enabled
// superadmin account. It is an ErrInvalidState.
var ErrLastSuperAdmin = fmt.Errorf("the last enabled superadmin account must stay: %w", ErrInvalidState)

// ErrOwnAdminAccount refuses an admin disabling or deleting their own
// account. It is an ErrInvalidState.
var ErrOwnAdminAccount = fmt.Errorf("an admin cannot disable or delete their own account: %w", ErrInvalidState)

// checkNotSelf refuses when the actor is the account itself.
func checkNotSelf(actor Actor, a *AdminAccount) error {
	if actor.ID == "admin:"+a.ID {
		return fmt.Errorf("admin %q: %w", a.Name, ErrOwnAdminAccount)
	}
	return nil
}

// checkNotLastSuperAdmin refuses when a is an enabled superadmin and no
// other enabled superadmin exists. It scans adm/ in the changing
// transaction, so two concurrent removals cannot both pass.
func checkNotLastSuperAdmin(tx Tx, a *AdminAccount) error {
	if a.Role != RoleSuperAdmin || a.Disabled {
		return nil
	}
	accs, err := adminAccounts(tx)
	if err != nil {
		return err
	}
	for _, o := range accs {
		if o.ID != a.ID && o.Role == RoleSuperAdmin && !o.Disabled {
			return nil
		}
	}
	return fmt.Errorf("admin %q: %w", a.Name, ErrLastSuperAdmin)
}

// ResetAdminPassword replaces an admin's password. An empty password makes
// the Service generate a one-time password, return it (once) and require
// the admin to change it at the next sign-in; a given one is set as is
// (SetAdminPassword). Failures and lockout are cleared: a reset is how a
// locked-out admin gets back in.
func (s *Service) ResetAdminPassword(ctx context.Context, name string, password Secret) (AdminAccount, Secret, error) {
	generated := Secret("")
	if password == "" {
		p, err := s.generatePassword()
		if err != nil {
			return AdminAccount{}, "", err
		}
		password, generated = p, p
	} else {
		v := &ValidationError{}
		validateAdminPassword(password.Reveal(), v)
		if err := v.Err(); err != nil {
			return AdminAccount{}, "", err
		}
	}
	hash, err := s.hashAdminPassword(ctx, password.Reveal())
	if err != nil {
		return AdminAccount{}, "", err
	}
	var out AdminAccount
	detail := "set"
	if generated != "" {
		detail = "one-time"
	}
	err = s.change(ctx, AuditEvent{Action: "admin.password", Target: name, Detail: detail}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		a, err := getAdmin(tx, name)
		if err != nil {
			return err
		}
		a.PasswordHash, a.UpdatedAt, a.MustChangePassword = hash, now, generated != ""
		a.Failures, a.LockedUntil = 0, time.Time{}
		out = *a
		return putJSON(tx, adminKey(a.Name), a)
	})
	if err != nil {
		return AdminAccount{}, "", err
	}
	return out, generated, nil
}

// ChangeAdminPassword is an admin changing their own password (the
// console's first sign-in after a one-time password, or later): the current
// password is checked again, so a stolen session cannot take the account
// over, and a wrong one counts toward the lockout like a failed sign-in
// (ErrUnauthenticated). It clears MustChangePassword.
func (s *Service) ChangeAdminPassword(ctx context.Context, name string, current, next Secret) error {
	v := &ValidationError{}
	validateAdminPassword(next.Reveal(), v)
	if current == next {
		v.Add("new_password", "must differ from the current password")
	}
	if err := v.Err(); err != nil {
		return err
	}
	acc, err := s.GetAdmin(ctx, name)
	if err != nil {
		return err
	}
	ok, err := s.checkAdminPassword(ctx, &acc, current.Reveal())
	if err != nil {
		return err
	}
	now := s.now().UTC()
	if !ok || acc.Locked(now) || acc.Disabled {
		return s.refuseAdmin(ctx, &acc, adminReasonBadPassword, now)
	}
	hash, err := s.hashAdminPassword(ctx, next.Reveal())
	if err != nil {
		return err
	}
	return s.change(ctx, AuditEvent{Action: "admin.password.change", Target: acc.Name}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		a, err := getAdmin(tx, acc.Name)
		if err != nil {
			return err
		}
		if a.ID != acc.ID || a.PasswordHash != acc.PasswordHash {
			return fmt.Errorf("admin %q changed meanwhile: %w", acc.Name, ErrConflict)
		}
		a.PasswordHash, a.UpdatedAt, a.MustChangePassword, a.Failures = hash, now, false, 0
		return putJSON(tx, adminKey(a.Name), a)
	})
}

// SetAdminDisabled disables or enables an admin account. A disabled admin
// cannot sign in and their console sessions end at their next request.
func (s *Service) SetAdminDisabled(ctx context.Context, name string, disabled bool) (AdminAccount, error) {
	actor := ActorFrom(ctx)
	action := "admin.enable"
	if disabled {
		action = "admin.disable"
	}
	var out AdminAccount
	err := s.change(ctx, AuditEvent{Action: action, Target: name}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		a, err := getAdmin(tx, name)
		if err != nil {
			return err
		}
		if disabled && !a.Disabled {
			if err := checkNotSelf(actor, a); err != nil {
				return err
			}
			if err := checkNotLastSuperAdmin(tx, a); err != nil {
				return err
			}
		}
		a.Disabled, a.UpdatedAt = disabled, now
		out = *a
		return putJSON(tx, adminKey(a.Name), a)
	})
	return out, err
}

// DeleteAdmin removes an admin account; their console sessions end at
// their next request (the console re-reads the account every time).
func (s *Service) DeleteAdmin(ctx context.Context, name string) error {
	actor := ActorFrom(ctx)
	return s.change(ctx, AuditEvent{Action: "admin.delete", Target: name}, func(tx Tx, _ time.Time, _ *AuditEvent) error {
		a, err := getAdmin(tx, name)
		if err != nil {
			return err
		}
		if err := checkNotSelf(actor, a); err != nil {
			return err
		}
		if err := checkNotLastSuperAdmin(tx, a); err != nil {
			return err
		}
		return tx.Delete(adminKey(a.Name))
	})
}
