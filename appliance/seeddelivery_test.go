package appliance_test

import (
	"bytes"
	"errors"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/otp"
	"tokend/appliance/tokenfile"
)

// deliveryFixture has user "alice" holding software token 160000000000 and
// three profiles: file, ctf bound to a password, ctf bound to a device.
func deliveryFixture(t *testing.T) (*fixture, appliance.UserView) {
	t.Helper()
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(2, 160000000000))
	for _, p := range []appliance.Profile{
		{Name: "file", DeviceType: appliance.DeviceGeneric, DeliveryMethod: appliance.DeliveryFile, PINMode: appliance.PINModeNone},
		{Name: "ctf-pw", DeviceType: appliance.DeviceIOS, DeliveryMethod: appliance.DeliveryCTF, PINMode: appliance.PINModeNone},
		{Name: "ctf-dev", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryCTF, CTFBinding: appliance.CTFBindingDeviceID},
		{Name: "ctkip", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryCTKIP},
	} {
		if _, err := f.svc.CreateProfile(f.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	u := f.user(t, "alice")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"160000000000"}); err != nil {
		t.Fatal(err)
	}
	return f, u
}

// fileSeed takes the token file once and opens it with password.
func fileSeed(t *testing.T, f *fixture, password string) []byte {
	t.Helper()
	doc, err := f.svc.TakeTokenFile(f.ctx, "160000000000")
	if err != nil {
		t.Fatal(err)
	}
	res, err := tokenfile.ParseSDTID(bytes.NewReader(doc), tokenfile.SDTIDOptions{Password: password})
	if err != nil || len(res.Records) != 1 {
		t.Fatalf("token file: %v %+v", err, res)
	}
	return res.Records[0].Seed
}

func TestDeliverSeedByFile(t *testing.T) {
	f, _ := deliveryFixture(t)
	d, err := f.svc.DeliverSeed(f.ctx, "160000000000", appliance.SeedDeliveryRequest{Profile: "file"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Method != appliance.DeliveryFile || len(d.FilePassword.Reveal()) != 16 || !d.ExpiresAt.Equal(f.clock.Now().Add(appliance.HandoutTTL)) {
		t.Fatalf("delivery %+v", d)
	}
	seed := fileSeed(t, f, d.FilePassword.Reveal())
	if _, err := f.svc.TakeTokenFile(f.ctx, "160000000000"); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("second download: %v", err)
	}
	gen, _ := otp.NewSecurID(seed, "160000000000", 8, 60)
	step := f.clock.Now().Unix() / 60
	if r := f.auth(t, codeAt(t, gen, step), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("the file's code: %+v", r)
	}

	// A new delivery replaces the seed: the old one's codes stop.
	if _, err := f.svc.DeliverSeed(f.ctx, "160000000000", appliance.SeedDeliveryRequest{Profile: "file", Password: "chosen"}); err != nil {
		t.Fatal(err)
	}
	if r := f.auth(t, codeAt(t, gen, step+1), ""); r.Result == appliance.AuthAccept {
		t.Fatal("the replaced seed still authenticates")
	}
	gen2, _ := otp.NewSecurID(fileSeed(t, f, "chosen"), "160000000000", 8, 60)
	if r := f.auth(t, codeAt(t, gen2, step+1), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("the new file's code: %+v", r)
	}
}

// TestTokenFileGoneAfterChange: a waiting token file is refused once the
// token changed or the download window passed.
func TestTokenFileGoneAfterChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, f *fixture, u appliance.UserView)
	}{
		{name: "unassigned", change: func(t *testing.T, f *fixture, u appliance.UserView) {
			if err := f.svc.UnassignToken(f.ctx, u.ID, "160000000000"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "disabled", change: func(t *testing.T, f *fixture, _ appliance.UserView) {
			if _, err := f.svc.SetTokenEnabled(f.ctx, "160000000000", false); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "expired", change: func(t *testing.T, f *fixture, _ appliance.UserView) { f.clock.Add(appliance.HandoutTTL) }},
		{name: "re-issued by CTF", change: func(t *testing.T, f *fixture, _ appliance.UserView) {
			if _, err := f.svc.DeliverSeed(f.ctx, "160000000000", appliance.SeedDeliveryRequest{Profile: "ctf-pw", Password: "pw"}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, u := deliveryFixture(t)
			if _, err := f.svc.DeliverSeed(f.ctx, "160000000000", appliance.SeedDeliveryRequest{Profile: "file"}); err != nil {
				t.Fatal(err)
			}
			tc.change(t, f, u)
			if doc, err := f.svc.TakeTokenFile(f.ctx, "160000000000"); !errors.Is(err, appliance.ErrNotFound) {
				t.Fatalf("download after the change: %v (%d bytes)", err, len(doc))
			}
		})
	}
}

func TestDeliverSeedByCTF(t *testing.T) {
	f, _ := deliveryFixture(t)
	d, err := f.svc.DeliverSeed(f.ctx, "160000000000", appliance.SeedDeliveryRequest{Profile: "ctf-pw", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if d.DeviceURL.Reveal() != tokenfile.CTFIOSPrefix+d.CTF.Reveal() {
		t.Fatalf("iOS link %q", d.DeviceURL.Reveal())
	}
	if _, err := tokenfile.DecodeCTF(d.DeviceURL.Reveal(), tokenfile.CTFOptions{Password: "wrong"}); !errors.Is(err, tokenfile.ErrCTFLocked) {
		t.Fatalf("the string opens without its password: %v", err)
	}
	tok, err := tokenfile.DecodeCTF(d.DeviceURL.Reveal(), tokenfile.CTFOptions{Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := otp.NewSecurID(tok.Seed, "160000000000", tok.Digits, tok.Interval)
	if r := f.auth(t, codeAt(t, gen, f.clock.Now().Unix()/60), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("the CTF string's code: %+v", r)
	}
}

func TestDeliverSeedRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		serial string
		req    appliance.SeedDeliveryRequest
		err    error
		field  string
	}{
		{name: "ctkip profile", serial: "160000000000", req: appliance.SeedDeliveryRequest{Profile: "ctkip"}, err: appliance.ErrInvalidState},
		{name: "unassigned token", serial: "160000000001", req: appliance.SeedDeliveryRequest{Profile: "file"}, err: appliance.ErrInvalidState},
		{name: "no such profile", serial: "160000000000", req: appliance.SeedDeliveryRequest{Profile: "nope"}, err: appliance.ErrNotFound},
		{name: "password binding without password", serial: "160000000000", req: appliance.SeedDeliveryRequest{Profile: "ctf-pw"}, field: "password"},
		{name: "device binding without device", serial: "160000000000", req: appliance.SeedDeliveryRequest{Profile: "ctf-dev"}, field: "device_id"},
		{name: "password for a device-bound CTF", serial: "160000000000", req: appliance.SeedDeliveryRequest{Profile: "ctf-dev",
			DeviceID: "0123456789abcdef", Password: "unused"}, field: "password"},
		{name: "device id for a token file", serial: "160000000000", req: appliance.SeedDeliveryRequest{Profile: "file",
			DeviceID: "0123456789abcdef"}, field: "device_id"},
		{name: "device id not hex", serial: "160000000000", req: appliance.SeedDeliveryRequest{Profile: "ctf-dev",
			DeviceID: "phone-of-alice"}, field: "device_id"},
		{name: "password too long", serial: "160000000000", req: appliance.SeedDeliveryRequest{Profile: "file",
			Password: appliance.Secret(bytes.Repeat([]byte("p"), 41))}, field: "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := deliveryFixture(t)
			before, err := f.svc.GetToken(f.ctx, tc.serial)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.DeliverSeed(f.ctx, tc.serial, tc.req)
			var ve *appliance.ValidationError
			switch {
			case tc.field != "":
				if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Field != tc.field {
					t.Fatalf("err = %v, want a problem with %s", err, tc.field)
				}
			case !errors.Is(err, tc.err):
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			after, _ := f.svc.GetToken(f.ctx, tc.serial)
			if !bytes.Equal(before.Seed, after.Seed) || before.Provisioned != after.Provisioned {
				t.Fatal("a refused delivery changed the token")
			}
		})
	}
}

func TestOTPAuthProfileDefaults(t *testing.T) {
	f := newFixture(t, memstore.New())
	p, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "app", DeviceType: appliance.DeviceTOTPApp, DeliveryMethod: appliance.DeliveryOTPAuth})
	if err != nil {
		t.Fatal(err)
	}
	if p.Digits != 6 || p.Interval != 30 || p.Hash != "sha1" || p.PINMode != appliance.PINModeNone {
		t.Fatalf("defaults %+v", p)
	}
	for _, bad := range []appliance.Profile{
		{Name: "a", DeviceType: appliance.DeviceTOTPApp, DeliveryMethod: appliance.DeliveryCTKIP},
		{Name: "b", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryOTPAuth},
		{Name: "c", DeviceType: appliance.DeviceTOTPApp, DeliveryMethod: appliance.DeliveryOTPAuth, PINMode: appliance.PINModePINPad},
		{Name: "d", DeviceType: appliance.DeviceTOTPApp, DeliveryMethod: appliance.DeliveryOTPAuth, Hash: "md5"},
		{Name: "e", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryCTKIP, Hash: "sha1"},
		{Name: "f", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryFile, CTFBinding: appliance.CTFBindingNone},
	} {
		var ve *appliance.ValidationError
		if _, err := f.svc.CreateProfile(f.ctx, bad); !errors.As(err, &ve) {
			t.Errorf("profile %+v: err = %v, want a validation error", bad, err)
		}
	}
}

// TestDeliverSeedCTFExpiryOutOfRange: a CTF string carries expiry days
// 2000-2044 only. A token expiring later is refused before its seed is
// replaced, so the seed it has keeps working and no audit says a new one
// went out.
func TestDeliverSeedCTFExpiryOutOfRange(t *testing.T) {
	f, u := deliveryFixture(t)
	f.importCSV(t, "serial,expires_at\n160000000009,2099-12-31\n")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"160000000009"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetTokenEnabled(f.ctx, "160000000009", true); err != nil {
		t.Fatal(err)
	}
	before, err := f.svc.GetToken(f.ctx, "160000000009")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.DeliverSeed(f.ctx, "160000000009", appliance.SeedDeliveryRequest{Profile: "ctf-pw", Password: "pw"})
	if !errors.Is(err, appliance.ErrInvalidState) {
		t.Fatalf("err = %v, want ErrInvalidState", err)
	}
	after, _ := f.svc.GetToken(f.ctx, "160000000009")
	if !bytes.Equal(before.Seed, after.Seed) || before.Provisioned != after.Provisioned || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatal("a refused CTF delivery changed the token")
	}
}
