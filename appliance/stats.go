package appliance

import (
	"context"
	"encoding/json"
	"fmt"
)

// Stats are the inventory figures an operator watches, computed from the
// small index records so a scrape never decodes the big ones.
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
		kvs, err := tx.Scan([]byte(pfxTokenState), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			ix := parseTokenState(kv)
			st.Tokens[[2]string{ix.Kind, ix.State}]++
			if ix.UserID != "" {
				st.Assigned++
			}
			if ix.Provisioned {
				st.Provisioned++
			}
		}
		if kvs, err = tx.Scan([]byte(pfxUserLogin), nil, 0); err != nil {
			return err
		}
		for _, kv := range kvs {
			ix := parseLoginIndex(kv.Value)
			st.Users[[2]string{ix.Source, fmt.Sprint(ix.Active)}]++
		}
		if kvs, err = tx.Scan([]byte(pfxCode), nil, 0); err != nil {
			return err
		}
		for _, kv := range kvs {
			var c ActivationCode
			if err := json.Unmarshal(kv.Value, &c); err != nil {
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
