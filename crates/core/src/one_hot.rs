//! Class ids as the one-hot rows a conditional generator or discriminator reads.

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Checks that class `c` is one of `n` classes, naming both when not.
pub fn check_class(c: u32, n: usize) -> Result<()> {
    if c as usize >= n {
        return Err(Error::invalid(format!("class {c} of a model with {n} classes")));
    }
    Ok(())
}

/// One-hot rows `[classes.len(), n]` of `classes`.
pub fn one_hot(classes: &[u32], n: usize, device: &Device) -> Result<Tensor> {
    for &c in classes {
        check_class(c, n)?;
    }
    let v: Vec<f32> = classes
        .iter()
        .flat_map(|&c| (0..n).map(move |j| f32::from(j == c as usize)))
        .collect();
    Ok(Tensor::from_vec(v, (classes.len(), n), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_a_single_one_at_the_class() {
        let t = one_hot(&[2, 0], 3, &Device::Cpu).unwrap();
        assert_eq!(t.to_vec2::<f32>().unwrap(), [[0., 0., 1.], [1., 0., 0.]]);
        let e = one_hot(&[3], 3, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("class 3") && e.contains("3 classes"), "{e}");
    }
}
