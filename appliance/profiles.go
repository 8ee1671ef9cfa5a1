package appliance

import (
	"context"
	"fmt"
	"regexp"
	"time"
)

var profileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// MaxCodeTTL bounds activation code lifetimes.
const MaxCodeTTL = 90 * 24 * time.Hour

func (s *Service) validateProfile(p *Profile) error {
	v := &ValidationError{}
	if !profileName.MatchString(p.Name) {
		v.Add("name", "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	switch p.DeviceType {
	case DeviceAndroid, DeviceIOS, DeviceWindows, DeviceMacOS, DeviceGeneric, DeviceTOTPApp:
	default:
		v.Add("device_type", "must be android, ios, windows, macos, generic or totp-app")
	}
	switch p.DeliveryMethod {
	case DeliveryCTKIP, DeliveryFile, DeliveryCTF, DeliveryOTPAuth:
	default:
		v.Add("delivery_method", "must be ctkip, file, ctf or otpauth")
	}
	validateOTPAuth(p, v)
	if p.Digits == 0 {
		p.Digits = 8
	}
	if p.Interval == 0 {
		p.Interval = 60
	}
	if p.Digits != 6 && p.Digits != 8 {
		v.Add("digits", "must be 6 or 8")
	}
	if p.Interval != 30 && p.Interval != 60 {
		v.Add("interval", "must be 30 or 60")
	}
	if p.PINMode == "" {
		p.PINMode = PINModePINPad
	}
	switch p.PINMode {
	case PINModeNone, PINModePINPad, PINModeFob:
	default:
		v.Add("pin_mode", "must be none, pinpad or fob")
	}
	validateCTFBinding(p, v)
	if p.ActivationCodeTTL == 0 {
		p.ActivationCodeTTL = s.codeTTL
	}
	if p.ActivationCodeTTL < time.Minute || p.ActivationCodeTTL > MaxCodeTTL {
		v.Add("activation_code_ttl", fmt.Sprintf("must be between 1m and %s", MaxCodeTTL))
	}
	if p.MaxLifetime < 0 || p.MaxLifetime > maxProfileLifetime {
		v.Add("max_lifetime", fmt.Sprintf("must be between 0 (the default, %s) and %s", DefaultMaxTokenLifetime, maxProfileLifetime))
	}
	if len(p.DisplayName) > 256 {
		v.Add("display_name", "at most 256 characters")
	}
	if len(p.HelpText) > 4096 {
		v.Add("help_text", "at most 4096 characters")
	}
	return v.Err()
}

// CreateProfile adds a software token profile (defaults: 8 digits, 60 s,
// PINPad-style PIN, the service's activation code lifetime).
func (s *Service) CreateProfile(ctx context.Context, p Profile) (Profile, error) {
	if err := s.validateProfile(&p); err != nil {
		return Profile{}, err
	}
	err := s.change(ctx, AuditEvent{Action: "profile.create", Target: p.Name}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		if ok, err := exists(tx, profileKey(p.Name)); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("profile %q: %w", p.Name, ErrExists)
		}
		p.CreatedAt, p.UpdatedAt = now, now
		return putJSON(tx, profileKey(p.Name), p)
	})
	return p, err
}

// UpdateProfile replaces a profile's settings; the name cannot change.
// Codes already issued keep the parameters they were issued with.
func (s *Service) UpdateProfile(ctx context.Context, name string, p Profile) (Profile, error) {
	if p.Name == "" {
		p.Name = name
	}
	if p.Name != name {
		return Profile{}, &ValidationError{Problems: []FieldError{{"name", "cannot be changed"}}}
	}
	if err := s.validateProfile(&p); err != nil {
		return Profile{}, err
	}
	err := s.change(ctx, AuditEvent{Action: "profile.update", Target: name}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		old, err := getProfile(tx, name)
		if err != nil {
			return err
		}
		p.CreatedAt, p.UpdatedAt = old.CreatedAt, now
		return putJSON(tx, profileKey(name), p)
	})
	return p, err
}

// DeleteProfile removes a profile.
func (s *Service) DeleteProfile(ctx context.Context, name string) error {
	return s.change(ctx, AuditEvent{Action: "profile.delete", Target: name}, func(tx Tx, _ time.Time, _ *AuditEvent) error {
		if _, err := getProfile(tx, name); err != nil {
			return err
		}
		return tx.Delete(profileKey(name))
	})
}

// GetProfile returns one profile.
func (s *Service) GetProfile(ctx context.Context, name string) (Profile, error) {
	var out Profile
	err := s.store.View(ctx, func(tx Tx) error {
		p, err := getProfile(tx, name)
		if err != nil {
			return err
		}
		out = *p
		return nil
	})
	return out, err
}

// ListProfiles returns every profile in name order.
func (s *Service) ListProfiles(ctx context.Context) ([]Profile, error) {
	return listJSON[Profile](ctx, s.store, pfxProfile)
}
