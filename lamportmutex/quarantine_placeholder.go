package lamportmutex

// Quarantine reports bad input from peer that the application found after
// its handler returned. This version only logs it; the quarantine of the
// peer's current incarnation is the driver's to implement.
func (m *Mutex) Quarantine(peer string, cause error) {
	m.log.Warn("lamportmutex: quarantine asked for", "peer", peer, "err", cause)
}
