package transport

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
)

// clientTLS returns the dialer's TLS config for peer id: the chain is
// verified against base.RootCAs and the leaf must name id and no other
// member.
func clientTLS(base *tls.Config, members map[string]bool, id string) *tls.Config {
	c := base.Clone()
	skipChain := base.InsecureSkipVerify
	user := base.VerifyConnection
	c.InsecureSkipVerify = true // verified below, against id instead of ServerName
	c.ServerName = ""
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: %q presented no certificate", ErrPeerCertificate, id)
		}
		leaf := cs.PeerCertificates[0]
		if !skipChain {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			opts := x509.VerifyOptions{Roots: base.RootCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
			if _, err := leaf.Verify(opts); err != nil {
				return fmt.Errorf("verifying certificate of %q: %w", id, err)
			}
		}
		if err := certNames(leaf, members, id); err != nil {
			return err
		}
		if user != nil {
			return user(cs)
		}
		return nil
	}
	return c
}

// certNames checks that cert names exactly one member, and that it is id.
// A certificate's names are its subject CommonName and its DNS SANs; names
// that are not member ids (a host name, say) are allowed and ignored. URI,
// IP and email SANs are not consulted.
func certNames(cert *x509.Certificate, members map[string]bool, id string) error {
	var named []string
	for _, n := range append([]string{cert.Subject.CommonName}, cert.DNSNames...) {
		if members[n] && !slices.Contains(named, n) {
			named = append(named, n)
		}
	}
	if len(named) == 1 && named[0] == id {
		return nil
	}
	dns := make([]string, 0, min(len(cert.DNSNames), 8))
	for _, n := range cert.DNSNames[:min(len(cert.DNSNames), 8)] {
		dns = append(dns, quoted(n))
	}
	what := "no member"
	switch {
	case len(named) > 1:
		what = fmt.Sprintf("%d members", len(named))
	case len(named) == 1:
		what = "member " + quoted(named[0])
	}
	return fmt.Errorf("%w %q: certificate names %s (CN %s, DNS %v)", ErrPeerCertificate, id, what, quoted(cert.Subject.CommonName), dns)
}
