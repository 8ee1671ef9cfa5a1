package appliance

import (
	"context"
	"fmt"
	"strings"
)

// Stats are the inventory figures an operator watches, read from the
// counters so a scrape never walks the indexes.
type Stats struct {
	Tokens      map[[2]string]int // (kind, state) → count
	Assigned    int
	Provisioned int
	Users       map[[2]string]int // (source, "true"|"false" active) → count
	// OutstandingCodes counts issued activation codes not yet consumed,
	// voided or expired.
	OutstandingCodes int
}

// Stats reads the inventory figures in one snapshot.
func (s *Service) Stats(ctx context.Context) (Stats, error) {
	now := s.now()
	var st Stats
	err := s.store.View(ctx, func(tx Tx) error {
		st = Stats{Tokens: map[[2]string]int{}, Users: map[[2]string]int{}}
		// Token and user figures come from the counters kept with the
		// records (counters.go).
		counts, err := tokenCounts(tx)
		if err != nil {
			return err
		}
		for _, c := range counts {
			st.Tokens[[2]string{c.Kind, c.State}] += c.N
			if c.Assigned {
				st.Assigned += c.N
			}
			if c.Provisioned {
				st.Provisioned += c.N
			}
		}
		users, err := readCounts(tx, keyUserCounts)
		if err != nil {
			return err
		}
		for f, n := range users {
			src, active, _ := strings.Cut(f, "\x00")
			st.Users[[2]string{src, fmt.Sprint(active == "1")}] += int(n)
		}
		kvs, err := tx.Scan([]byte(pfxCode), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var c ActivationCode
			if err := decodeRecord(tx, kv.Value, &c); err != nil {
				return fmt.Errorf("decode %q: %w", kv.Key, err)
			}
			if c.State == CodeIssued && now.Before(c.ExpiresAt) {
				st.OutstandingCodes++
			}
		}
		return nil
	})
	return st, err
}
