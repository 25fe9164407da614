/// What a declared number measures. Values are kept as harvested and also stored in the
/// dimension's SI unit, so that a range given in degC finds files written in K (SciCat
/// rewrote values in place; its users objected: the harvested value is never changed).
public enum Dimension: String, Sendable, CaseIterable {
    case none, temperature, length, energy, angle, time, pressure, magneticField = "magnetic_field"

    /// The SI unit values of this dimension are normalised to.
    public var siUnit: String {
        switch self {
        case .none: return ""
        case .temperature: return "K"
        case .length: return "m"
        case .energy: return "J"
        case .angle: return "rad"
        case .time: return "s"
        case .pressure: return "Pa"
        case .magneticField: return "T"
        }
    }
}

/// A unit: its dimension and the affine map to SI (si = value * scale + offset).
public struct UnitDefinition: Sendable {
    public let dimension: Dimension
    public let scale: Double
    public let offset: Double
}

public struct UnitError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The units files and queries write (NeXus's NX_TEMPERATURE, NX_LENGTH ... and the
/// spellings detectors and control systems use).
public enum Units {
    static let electronVolt = 1.602176634e-19
    static let table: [String: UnitDefinition] = {
        var t: [String: UnitDefinition] = [:]
        func add(_ names: [String], _ d: Dimension, _ scale: Double, _ offset: Double = 0) {
            for n in names { t[n] = UnitDefinition(dimension: d, scale: scale, offset: offset) }
        }
        add(["K", "kelvin", "Kelvin"], .temperature, 1)
        add(["mK"], .temperature, 1e-3)
        add(["degC", "C", "°C", "celsius", "Celsius", "deg_C", "oC"], .temperature, 1, 273.15)
        add(["degF", "F", "°F", "fahrenheit"], .temperature, 5.0 / 9.0, 273.15 - 32 * 5.0 / 9.0)
        add(["m", "metre", "meter"], .length, 1)
        add(["mm"], .length, 1e-3)
        add(["um", "µm", "micron", "microns"], .length, 1e-6)
        add(["nm"], .length, 1e-9)
        add(["pm"], .length, 1e-12)
        add(["cm"], .length, 1e-2)
        add(["A", "Å", "Angstrom", "angstrom", "Angstroms", "angstroms", "Ang"], .length, 1e-10)
        add(["J"], .energy, 1)
        add(["eV"], .energy, electronVolt)
        add(["meV"], .energy, electronVolt * 1e-3)
        add(["keV"], .energy, electronVolt * 1e3)
        add(["MeV"], .energy, electronVolt * 1e6)
        add(["rad", "radian", "radians"], .angle, 1)
        add(["mrad"], .angle, 1e-3)
        add(["deg", "degree", "degrees", "°"], .angle, Double.pi / 180)
        add(["s", "sec", "second", "seconds"], .time, 1)
        add(["ms"], .time, 1e-3)
        add(["us", "µs"], .time, 1e-6)
        add(["ns"], .time, 1e-9)
        add(["min", "minute", "minutes"], .time, 60)
        add(["h", "hour", "hours"], .time, 3600)
        add(["Pa"], .pressure, 1)
        add(["kPa"], .pressure, 1e3)
        add(["MPa"], .pressure, 1e6)
        add(["GPa"], .pressure, 1e9)
        add(["bar"], .pressure, 1e5)
        add(["mbar"], .pressure, 1e2)
        add(["T", "tesla"], .magneticField, 1)
        add(["mT"], .magneticField, 1e-3)
        add(["G", "gauss"], .magneticField, 1e-4)
        return t
    }()

    /// The definition of `unit` (surrounding spaces ignored), nil when unknown.
    public static func definition(_ unit: String) -> UnitDefinition? {
        table[unit.trimmed(" \t")]
    }

    /// `value` in `unit` as the SI value of `dimension`. A value without units is taken as
    /// already in SI (NeXus says the default unit is SI); a unit of another dimension is an
    /// error naming both.
    public static func toSI(_ value: Double, unit: String?, dimension: Dimension) throws -> Double {
        guard dimension != .none else { return value }
        guard let u = unit, !u.trimmed(" \t").isEmpty else { return value }
        guard let d = definition(u) else {
            throw UnitError("unknown unit '\(u)' (expected a unit of \(dimension.rawValue), such as \(dimension.siUnit))")
        }
        guard d.dimension == dimension else {
            throw UnitError("unit '\(u)' measures \(d.dimension.rawValue), not \(dimension.rawValue) (expected a unit such as \(dimension.siUnit))")
        }
        return value * d.scale + d.offset
    }
}

extension String {
    func trimmed(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
