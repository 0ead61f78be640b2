//! Small-scale geodesy on the WGS 84 sphere approximation: enough for
//! vehicles moving a few kilometres through a city.

/// Mean Earth radius in metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS 84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    pub const fn new(lat: f64, lon: f64) -> Self {
        LatLon { lat, lon }
    }

    /// Great-circle distance in metres (haversine).
    pub fn distance_m(self, to: LatLon) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), to.lat.to_radians());
        let dp = p2 - p1;
        let dl = (to.lon - self.lon).to_radians();
        let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
    }

    /// Initial bearing towards `to`, degrees clockwise from north in `[0, 360)`.
    pub fn bearing_deg(self, to: LatLon) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), to.lat.to_radians());
        let dl = (to.lon - self.lon).to_radians();
        let y = dl.sin() * p2.cos();
        let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
        let deg = y.atan2(x).to_degrees().rem_euclid(360.0);
        // rem_euclid may round up to exactly 360.0 for tiny negative angles.
        if deg >= 360.0 { 0.0 } else { deg }
    }

    /// The point `north_m` metres north and `east_m` metres east of this one.
    pub fn offset_m(self, north_m: f64, east_m: f64) -> LatLon {
        let dlat = (north_m / EARTH_RADIUS_M).to_degrees();
        let dlon = (east_m / (EARTH_RADIUS_M * self.lat.to_radians().cos())).to_degrees();
        LatLon::new(self.lat + dlat, self.lon + dlon)
    }

    /// Linear interpolation; `f` in `[0, 1]`. Fine over city distances.
    pub fn lerp(self, to: LatLon, f: f64) -> LatLon {
        LatLon::new(
            self.lat + (to.lat - self.lat) * f,
            self.lon + (to.lon - self.lon) * f,
        )
    }
}

/// A closed GeoJSON ring (`[lon, lat]`, first point repeated last) of
/// `corners` points approximating a circle, coordinates rounded to 5
/// decimals (about a metre).
pub(crate) fn circle_ring(centre: LatLon, radius_m: f64, corners: usize) -> Vec<[f64; 2]> {
    let n = corners.max(3);
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let a = std::f64::consts::TAU * i as f64 / n as f64;
            let p = centre.offset_m(radius_m * a.cos(), radius_m * a.sin());
            [round_to(p.lon, 5), round_to(p.lat, 5)]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

/// `x` rounded to `decimals` decimal places.
pub(crate) fn round_to(x: f64, decimals: i32) -> f64 {
    let k = 10f64.powi(decimals);
    (x * k).round() / k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_bearings_are_plausible() {
        let st_pauli = LatLon::new(53.5456, 9.9700);
        let north = st_pauli.offset_m(1000.0, 0.0);
        let east = st_pauli.offset_m(0.0, 1000.0);
        assert!((st_pauli.distance_m(north) - 1000.0).abs() < 1.0);
        assert!((st_pauli.distance_m(east) - 1000.0).abs() < 1.0);
        assert!(st_pauli.bearing_deg(north) < 0.01 || st_pauli.bearing_deg(north) > 359.99);
        assert!((st_pauli.bearing_deg(east) - 90.0).abs() < 0.1);
        let south_west = st_pauli.offset_m(-500.0, -500.0);
        assert!((st_pauli.bearing_deg(south_west) - 225.0).abs() < 0.1);
        // St. Pauli to Zollenspieker is roughly 20 km.
        let d = st_pauli.distance_m(LatLon::new(53.3990, 10.1870));
        assert!((19_000.0..23_000.0).contains(&d), "{d}");
        assert_eq!(round_to(1.23456, 2), 1.23);
        let ring = circle_ring(st_pauli, 200.0, 12);
        assert_eq!(ring.len(), 13);
        assert_eq!(ring.first(), ring.last());
        for p in &ring[..12] {
            let d = st_pauli.distance_m(LatLon::new(p[1], p[0]));
            assert!((199.0..201.0).contains(&d), "{d}");
        }
    }
}
