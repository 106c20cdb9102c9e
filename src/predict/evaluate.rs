//! How good the churn score is, judged on what happened next.
//!
//! Fit and score on a calibration period, then record for each customer
//! whether they came back in the holdout period that follows. The outcome
//! `churned = true` means "no purchase in the holdout window", the event the
//! churn risk predicts. [`auc`] is the probability that a random churner
//! scores higher than a random customer who came back (0.5 is chance);
//! [`band_stats`] says, per band, how many of its customers churned
//! (precision) and how many of all churners it caught (recall).

use serde::{Deserialize, Serialize};

use super::PredictError;
use super::score::RiskBand;

/// The area under the ROC curve of `scores` (higher = more likely to churn)
/// against `churned`, ties counted half (the Mann–Whitney U statistic over
/// the product of the class sizes). `None` when either class is empty.
pub fn auc(scores: &[f64], churned: &[bool]) -> Result<Option<f64>, PredictError> {
    same_length(scores.len(), churned.len())?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| scores[i].total_cmp(&scores[j]));
    let positives = churned.iter().filter(|&&c| c).count();
    let negatives = churned.len() - positives;
    if positives == 0 || negatives == 0 {
        return Ok(None);
    }
    // Sum of the (1-based, tie-averaged) ranks of the churners.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        let churners = order[start..end].iter().filter(|&&i| churned[i]).count();
        rank_sum += mid_rank * churners as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Ok(Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n)))
}

/// One band's record on the holdout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BandStats {
    pub band: RiskBand,
    /// Customers in the band.
    pub customers: usize,
    /// Of them, how many churned.
    pub churned: usize,
    /// churned / customers: how often the band is right (`None` if empty).
    pub precision: Option<f64>,
    /// churned / all churners: the share of churners the band holds.
    pub recall: Option<f64>,
    /// Precision of "this band or riskier" as the churn prediction.
    pub precision_at_or_above: Option<f64>,
    /// Recall of "this band or riskier" (1 for the low band).
    pub recall_at_or_above: Option<f64>,
}

/// Precision and recall per band, lowest band first.
pub fn band_stats(bands: &[RiskBand], churned: &[bool]) -> Result<[BandStats; 3], PredictError> {
    same_length(bands.len(), churned.len())?;
    let total_churned = churned.iter().filter(|&&c| c).count();
    let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
    Ok(RiskBand::ALL.map(|band| {
        let count = |pick: &dyn Fn(RiskBand) -> bool| {
            bands
                .iter()
                .zip(churned)
                .filter(|(b, _)| pick(**b))
                .fold((0, 0), |(n, c), (_, &churn)| {
                    (n + 1, c + usize::from(churn))
                })
        };
        let (customers, band_churned) = count(&|b| b == band);
        let (above, above_churned) = count(&|b| b >= band);
        BandStats {
            band,
            customers,
            churned: band_churned,
            precision: ratio(band_churned, customers),
            recall: ratio(band_churned, total_churned),
            precision_at_or_above: ratio(above_churned, above),
            recall_at_or_above: ratio(above_churned, total_churned),
        }
    }))
}

fn same_length(scores: usize, outcomes: usize) -> Result<(), PredictError> {
    if scores == outcomes {
        Ok(())
    } else {
        Err(PredictError::LengthMismatch { scores, outcomes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_is_one_for_a_perfect_ranking_and_half_for_ties() {
        let churned = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &churned), Ok(Some(1.0)));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &churned), Ok(Some(0.0)));
        assert_eq!(auc(&[0.5; 4], &churned), Ok(Some(0.5)));
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), Ok(None));
    }

    #[test]
    fn auc_counts_pairs() {
        // Churners at 0.4 and 0.7; stayers at 0.3, 0.5, 0.7.
        // Pairs (churner > stayer): 0.4>0.3 ✓, 0.4>0.5 ✗, 0.4>0.7 ✗,
        // 0.7>0.3 ✓, 0.7>0.5 ✓, 0.7=0.7 ½ → 3.5 / 6.
        let scores = [0.4, 0.7, 0.3, 0.5, 0.7];
        let churned = [true, true, false, false, false];
        let got = auc(&scores, &churned).unwrap().unwrap();
        assert!((got - 3.5 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn band_stats_count_precision_and_recall() {
        use RiskBand::*;
        let bands = [Low, Low, Medium, Medium, High, High, High];
        let churned = [false, true, false, true, true, true, false];
        let [low, medium, high] = band_stats(&bands, &churned).unwrap();
        assert_eq!((low.customers, low.churned), (2, 1));
        assert_eq!(low.precision, Some(0.5));
        assert_eq!(low.recall, Some(0.25));
        assert_eq!(low.recall_at_or_above, Some(1.0));
        assert_eq!(medium.precision_at_or_above, Some(3.0 / 5.0));
        assert_eq!(medium.recall_at_or_above, Some(3.0 / 4.0));
        assert_eq!(high.precision, Some(2.0 / 3.0));
        assert_eq!(high.recall, Some(0.5));
        assert_eq!(high.precision, high.precision_at_or_above);
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        assert_eq!(
            auc(&[0.1], &[true, false]),
            Err(PredictError::LengthMismatch {
                scores: 1,
                outcomes: 2
            })
        );
        assert!(band_stats(&[RiskBand::Low], &[]).is_err());
    }
}
