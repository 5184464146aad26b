package auth

import bolt "go.etcd.io/bbolt"

// Routes lists the method and pattern of every handler route.
func (s *Sidecar) Routes() [][2]string {
	out := make([][2]string, len(s.routes))
	for i, r := range s.routes {
		out[i] = [2]string{r.method, r.pattern}
	}
	return out
}

// FlightWaiters is the number of callers waiting for the in-flight lookup
// of prefix.
func (k *Keyring) FlightWaiters(prefix string) int {
	k.fmu.Lock()
	defer k.fmu.Unlock()
	if f := k.flights[prefix]; f != nil {
		return f.waiters
	}
	return -1
}

// NegativeLen is the number of remembered unknown prefixes.
func (k *Keyring) NegativeLen() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.negative)
}

// SignatureCount is the number of remembered signatures (both buckets
// agree: signatures and their expiry index).
func (s *BoltStore) SignatureCount() (sigs, index int) {
	_ = s.db.View(func(tx *bolt.Tx) error {
		sigs = tx.Bucket(bucketSigs).Stats().KeyN
		index = tx.Bucket(bucketSigExp).Stats().KeyN
		return nil
	})
	return sigs, index
}
