#!/usr/bin/env python3
"""Prints the reference values the unit tests of src/predict/ compare with.

Needs mpmath (`pip install mpmath`; 1.3.0 was used). Every number here is
computed from the published formulas at 30+ digits, independently of the
Rust code:

- special functions: mpmath's digamma and loggamma;
- 2F1: mpmath's hyp2f1;
- BG/NBD (Fader, Hardie & Lee 2005) at the paper's CDNOW estimates
  r, alpha, a, b = 0.243, 4.414, 0.793, 2.426: the log-likelihood (Eq. 6),
  P(alive), the conditional expectation (Eq. 10), and P0, the probability of
  no purchase in the next t weeks, by integrating the posterior numerically
  over (lambda, p) -- not from the closed form the Rust code uses.
"""
from mpmath import mp, mpf, digamma, loggamma, hyp2f1, log, exp, quad, gamma, beta, inf

mp.dps = 30

print("# special.rs: x, digamma(x), loggamma(x)")
for x in ["1e-8", "0.243", "0.5", "1", "2.426", "7.5", "30", "1000"]:
    print(x, mp.nstr(digamma(mpf(x)), 20), mp.nstr(loggamma(mpf(x)), 20))

print("# hyp2f1.rs: a, b, c, z, 2F1(a, b; c; z) (inputs as the f64s the tests pass)")
for a, b, c, z in [
    (1, 1, 2, "0.5"), ("0.5", "0.5", "1.5", "0.25"),
    ("2.243", "4.426", "4.219", "0.5"), ("2.243", "4.426", "4.219", "0.95"),
    ("2.243", "4.426", "4.219", "0.999"), ("50.243", "52.426", "52.219", "0.9"),
    ("0.3", "1.7", "2.5", "-0.5"), ("0.3", "1.7", "2.5", "-20"),
    ("1.5", "2.5", "3.25", "-1000"), (-3, "2.5", "1.5", "0.7"),
    ("0.793", "2.426", "2.219", "0.3"), ("10.5", "0.25", "3.5", "0.98"),
]:
    value = hyp2f1(*(mpf(float(v)) for v in (a, b, c, z)))
    print(a, b, c, z, mp.nstr(value, 20))

r, al, a, b = mpf("0.243"), mpf("4.414"), mpf("0.793"), mpf("2.426")


def log_likelihood(x, tx, T):
    A1 = loggamma(r + x) - loggamma(r) + r * log(al)
    A2 = loggamma(a + b) + loggamma(b + x) - loggamma(b) - loggamma(a + b + x)
    A3 = -(r + x) * log(al + T)
    if x == 0:
        return A1 + A2 + A3
    A4 = log(a) - log(b + x - 1) - (r + x) * log(al + tx)
    return A1 + A2 + log(exp(A3) + exp(A4))


def p_alive(x, tx, T):
    if x == 0:
        return mpf(1)
    return 1 / (1 + (a / (b + x - 1)) * ((al + T) / (al + tx)) ** (r + x))


def expected(x, tx, T, t):
    z = t / (al + T + t)
    bracket = 1 - ((al + T) / (al + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    return (a + b + x - 1) / (a - 1) * bracket * p_alive(x, tx, T)


def p0_integrated(x, tx, T, t):
    """E[1{dead} + 1{alive} exp(-lambda t) | x, tx, T], integrating over the prior."""
    mp.dps = 20
    g = lambda lam: al**r * lam ** (r - 1) * exp(-al * lam) / gamma(r)
    f = lambda p: p ** (a - 1) * (1 - p) ** (b - 1) / beta(a, b)

    def lik(lam, p, quiet):
        alive = (1 - p) ** x * lam**x * exp(-lam * T) * quiet
        dead = p * (1 - p) ** (x - 1) * lam**x * exp(-lam * tx) if x > 0 else 0
        return alive, dead

    def integral(with_window):
        def inner(lam):
            def h(p):
                alive, dead = lik(lam, p, exp(-lam * t) if with_window else 1)
                return g(lam) * f(p) * (alive + dead)
            return quad(h, [0, 0.5, 1])
        return quad(inner, [0, 0.1, 1, 10, inf])

    value = integral(True) / integral(False)
    mp.dps = 30
    return value


print("# bgnbd.rs: x, t_x, T -> log-likelihood, P(alive)")
for x, tx, T in [(2, "30.43", "38.86"), (0, "0", "38.86"), (7, "29.43", "38.86")]:
    print(x, tx, T, mp.nstr(log_likelihood(x, mpf(tx), mpf(T)), 17), mp.nstr(p_alive(x, mpf(tx), mpf(T)), 17))

print("# bgnbd.rs: x, t_x, T, t -> E[Y(t) | x, t_x, T]")
for x, tx, T, t in [(2, "30.43", "38.86", 39), (7, "29.43", "38.86", 39), (0, 0, 0, 39), (0, 0, 0, "1e-3"),
                    (500, "38", "38.86", 39), (500, "38.85", "38.86", 39)]:
    print(x, tx, T, t, mp.nstr(expected(x, mpf(tx), mpf(T), mpf(t)), 17))

print("# bgnbd.rs: x, t_x, T, t -> P0 by numerical integration of the posterior")
for x, tx, T, t in [(2, "30.43", "38.86", 39), (7, "29.43", "38.86", 13), (1, 5, 20, 4)]:
    print(x, tx, T, t, mp.nstr(p0_integrated(x, mpf(tx), mpf(T), mpf(t)), 15))
