//! Viewport parameters from clients (websocket and REST), validated.

use fusion::{Bbox, Resolution, Viewport};

/// Resolution used when a client names none.
pub const DEFAULT_RES: u8 = 8;

/// A viewport from an optional `[w,s,e,n]` and an optional resolution.
pub fn parse_viewport(bbox: Option<[f64; 4]>, res: Option<u8>) -> Result<Viewport, String> {
    let res = res.unwrap_or(DEFAULT_RES);
    let res = Resolution::try_from(res)
        .map_err(|_| format!("res {res} is not an H3 resolution (0-15)"))?;
    let bbox = bbox
        .map(|[w, s, e, n]| Bbox::new(w, s, e, n).map_err(|e| e.to_string()))
        .transpose()?;
    Ok(Viewport { bbox, res })
}

/// The viewport a client asked for, cut to the area its role allows (none:
/// as asked); an error when the two do not meet.
pub fn within_area(vp: Viewport, area: Option<Bbox>) -> Result<Viewport, String> {
    let Some(area) = area else {
        return Ok(vp);
    };
    let bbox = match vp.bbox {
        None => area,
        Some(b) => area
            .intersect(&b)
            .ok_or("the requested bbox lies outside the area this token may see")?,
    };
    Ok(Viewport {
        bbox: Some(bbox),
        res: vp.res,
    })
}

/// `w,s,e,n` as in a query string.
pub fn parse_bbox_param(text: &str) -> Result<[f64; 4], String> {
    let parts: Vec<&str> = text.split(',').collect();
    let nums: Result<Vec<f64>, _> = parts.iter().map(|p| p.trim().parse::<f64>()).collect();
    match nums {
        Ok(v) if v.len() == 4 => Ok([v[0], v[1], v[2], v[3]]),
        _ => Err(format!("bbox must be four numbers w,s,e,n; got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewports_validate() {
        assert!(parse_viewport(Some([9.8, 53.4, 10.2, 53.7]), Some(9)).is_ok());
        assert!(parse_viewport(None, None).is_ok());
        assert!(parse_viewport(None, Some(16)).is_err());
        assert!(parse_viewport(Some([9.8, 53.9, 10.2, 53.7]), None).is_err());
        assert_eq!(parse_bbox_param("1,2,3,4"), Ok([1.0, 2.0, 3.0, 4.0]));
        assert!(parse_bbox_param("1,2,3").is_err());
        assert!(parse_bbox_param("a,b,c,d").is_err());
    }
}
