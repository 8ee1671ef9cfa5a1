package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

// TestRecordDecoderMatchesEncodingJSON checks the decoder tokend hands the
// Service (goccy/go-json) against encoding/json on the stored record types:
// each is encoded by encoding/json, as the Service writes it, with every
// field set and with every field zero, and both decoders must give the same
// value.
func TestRecordDecoderMatchesEncodingJSON(t *testing.T) {
	records := []struct {
		name string
		new  func() any
	}{
		{"token", func() any { return new(appliance.Token) }},
		{"user", func() any { return new(appliance.User) }},
		{"profile", func() any { return new(appliance.Profile) }},
		{"activation code", func() any { return new(appliance.ActivationCode) }},
		{"audit record", func() any { return new(appliance.AuditRecord) }},
		{"API token", func() any { return new(appliance.APIToken) }},
		{"admin account", func() any { return new(appliance.AdminAccount) }},
		{"import job", func() any { return new(appliance.ImportJob) }},
		{"identity source", func() any { return new(appliance.IdentitySource) }},
		{"sync run", func() any { return new(appliance.SyncRun) }},
		{"group", func() any { return new(appliance.Group) }},
		{"counters", func() any { return new(map[string]int64) }},
	}
	for _, r := range records {
		for _, full := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/full=%v", r.name, full), func(t *testing.T) {
				v := r.new()
				if full {
					fill(reflect.ValueOf(v).Elem(), 1)
				}
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				want, got := r.new(), r.new()
				if err := json.Unmarshal(b, want); err != nil {
					t.Fatal(err)
				}
				if err := gojson.Unmarshal(b, got); err != nil {
					t.Fatalf("goccy/go-json: %v\n%s", err, b)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("decoders differ (-encoding/json +goccy/go-json):\n%s\nrecord: %s", diff, b)
				}
			})
		}
	}
}

// fill sets every settable field of v to a value that is not zero, with
// characters JSON must escape in the strings.
func fill(v reflect.Value, n int) {
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(time.Date(2026, 11, 26, 12, 34, 56, 789000000+n, time.FixedZone("", 3600))))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("value %d: \"é\" <&> \u2028", n))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(n + 100))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n + 100))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(n) + 0.25)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte{0, 1, 2, byte(n), 0xff})
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(s.Index(i), n+i)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for i := range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, n+i)
			fill(e, n+i)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), n)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				fill(f, n+i)
			}
		}
	}
}
