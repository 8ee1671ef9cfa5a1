package appliance

import "testing"

// TestRekeyFieldsRebuildTheSealersAAD checks that each sealed field rebuilds,
// from a record's key, the associated data its writer sealed with: a
// mismatch would make a rotation stop at that record.
func TestRekeyFieldsRebuildTheSealersAAD(t *testing.T) {
	field := func(name string) sealedField {
		for _, f := range sealedFields {
			if f.name == name {
				return f
			}
		}
		t.Fatalf("no sealed field %q", name)
		return sealedField{}
	}
	tests := []struct {
		name, field string
		key         []byte
		want        string
	}{
		{"token seed", "token seeds", tokenKey("000123456789"), seedAAD("000123456789")},
		{"RADIUS secret", "RADIUS secrets", agentKey("0193a0b1-0000-7000-8000-000000000001"), agentSecretAAD("0193a0b1-0000-7000-8000-000000000001")},
		{"bind password", "LDAP bind passwords", sourceKey("src-1"), bindPasswordAAD("src-1")},
		{"rollout code", "rollout activation codes", rolloutItemKey("ro-1", 42), codeAAD("ro-1", 42)},
		{"CT-KIP key", "CT-KIP server key", keyCTKIP, ctkipKeyAAD},
		{"CT-KIP session", "CT-KIP sessions", []byte(pfxCTKIPSession + "ab12"), ctkipSessionAAD("ab12")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := field(tc.field)
			if got := f.aad(string(tc.key)[len(f.prefix):]); got != tc.want {
				t.Fatalf("aad = %q, want %q", got, tc.want)
			}
		})
	}
}
