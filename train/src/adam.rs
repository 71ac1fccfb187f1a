//! Adam (Kingma and Ba, 2015; beta1 0.9, beta2 0.999, epsilon 1e-8, no weight decay, the
//! defaults of `tch::nn::Adam`) with its state in the open, so that a checkpoint holds
//! the moments and the step count and a resumed run continues exactly where it stopped.

use std::collections::HashMap;

use tch::{Kind, Tensor};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

/// Adam over a set of named parameters.
#[derive(Debug)]
pub struct Adam {
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: i64,
}

impl Adam {
    /// Adam over `params` (name, tensor), kept in name order so that the state's layout
    /// does not depend on how the caller collected them.
    pub fn new(mut params: Vec<(String, Tensor)>) -> Adam {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let zeros = |p: &Tensor| p.detach().zeros_like();
        Adam {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            names,
            params,
            t: 0,
        }
    }

    /// Gradients of `loss` with respect to the parameters.
    pub fn gradients(&self, loss: &Tensor) -> Vec<Tensor> {
        Tensor::run_backward(&[loss], &self.params, false, false)
    }

    /// One update with learning rate `lr`, given each parameter's gradient.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) {
        assert_eq!(grads.len(), self.params.len());
        self.t += 1;
        let t = self.t as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        tch::no_grad(|| {
            for (k, grad) in grads.iter().enumerate() {
                // A parameter the loss does not reach has no gradient and keeps its
                // value and moments (as in tch's and PyTorch's Adam).
                if !grad.defined() {
                    continue;
                }
                self.m[k] = &self.m[k] * BETA1 + grad * (1.0 - BETA1);
                self.v[k] = &self.v[k] * BETA2 + grad.square() * (1.0 - BETA2);
                let update = (&self.m[k] / c1) / ((&self.v[k] / c2).sqrt() + EPSILON) * lr;
                let mut p = self.params[k].shallow_clone();
                let _ = p.f_sub_(&update);
            }
        });
    }

    /// The state under `prefix`: `{prefix}.m.{name}`, `{prefix}.v.{name}` and
    /// `{prefix}.t` (the step count, as a one-element f64 tensor).
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.names.len() + 1);
        for (k, name) in self.names.iter().enumerate() {
            out.push((format!("{prefix}.m.{name}"), self.m[k].shallow_clone()));
            out.push((format!("{prefix}.v.{name}"), self.v[k].shallow_clone()));
        }
        out.push((
            format!("{prefix}.t"),
            Tensor::from_slice(&[self.t as f64]).to_kind(Kind::Double),
        ));
        out
    }

    /// Restores the state written by [`Adam::state`] under `prefix`, except the moments
    /// of the variables named in `fresh`, which keep their present values (zero for an
    /// optimiser that has not stepped).
    pub fn load_state(
        &mut self,
        saved: &HashMap<String, Tensor>,
        prefix: &str,
        fresh: &[&str],
    ) -> Result<(), String> {
        let get = |key: String| {
            saved
                .get(&key)
                .ok_or_else(|| format!("optimiser state {key} is missing"))
        };
        for (k, name) in self.names.iter().enumerate() {
            if fresh.contains(&name.as_str()) {
                continue;
            }
            for (slot, which) in [(&mut self.m[k], "m"), (&mut self.v[k], "v")] {
                let t = get(format!("{prefix}.{which}.{name}"))?;
                if t.size() != slot.size() {
                    return Err(format!(
                        "optimiser state {prefix}.{which}.{name} has shape {:?}, not {:?}",
                        t.size(),
                        slot.size()
                    ));
                }
                *slot = t.to_device(slot.device()).to_kind(slot.kind());
            }
        }
        let t = get(format!("{prefix}.t"))?;
        self.t = f64::try_from(t.sum(Kind::Double)).map_err(|e| e.to_string())? as i64;
        Ok(())
    }
}
