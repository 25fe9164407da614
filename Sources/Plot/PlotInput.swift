import NDArray

/// What one plot call draws, whatever it came from (NXdata, a field, an array, tables):
/// the signal, per-axis values (n centres or n + 1 bin edges), labels and errors.
public struct PlotInput: @unchecked Sendable {
    public var signal: NDArray
    public var axes: [[Double]?]
    public var axisLabels: [String?]
    public var errors: NDArray?
    public var signalLabel: String?
    public var title: String?
    /// The signal counts events (units "counts"): sqrt(N) error bars when no errors are given.
    public var counts = false
    /// NXdata draws 1-D data as markers (NeXpy); arrays and tables as lines.
    public var markers = false
    /// Size-1 dimensions are dropped (NeXus data, as NeXpy); an array of shape (1, n)
    /// given directly stays a one-row image.
    public var squeeze = false
    /// A pixel mask found next to the data (e.g. an Eiger's pixel_mask).
    public var pixelMask: NDArray?

    public init(signal: NDArray, axes: [[Double]?]? = nil, axisLabels: [String?]? = nil, errors: NDArray? = nil,
                signalLabel: String? = nil, title: String? = nil) {
        self.signal = signal
        self.axes = axes ?? Array(repeating: nil, count: signal.ndim)
        self.axisLabels = axisLabels ?? Array(repeating: nil, count: signal.ndim)
        self.errors = errors
        self.signalLabel = signalLabel
        self.title = title
    }

    /// Axis values for dimension k of length n: nil, n centres or n + 1 edges; anything
    /// else is an error naming the axis.
    func check() throws {
        guard axes.count == signal.ndim else {
            throw PlotError("\(axes.count) axes for a signal of \(signal.ndim) dimensions \(NDArray.describe(signal.shape))")
        }
        for (k, a) in axes.enumerated() {
            guard let a else { continue }
            let n = signal.shape[k]
            if a.count != n && a.count != n + 1 {
                let name = axisLabels[k].map { "'\($0)'" } ?? "\(k)"
                throw PlotError("axis \(name) has \(a.count) values for \(n) points along dimension \(k) of a signal of shape \(NDArray.describe(signal.shape)) (expected \(n) values or \(n + 1) bin edges)")
            }
        }
        if let e = errors, e.shape != signal.shape {
            throw PlotError("errors of shape \(NDArray.describe(e.shape)) do not match the signal's \(NDArray.describe(signal.shape))")
        }
    }

    /// One frame of an N-d signal: `index` fixes the leading dimensions, keeping the last
    /// one (1-D) or two (2-D images).
    public func frame(_ index: [Int]) throws -> PlotInput {
        let keep = signal.ndim - index.count
        guard keep == 1 || keep == 2, !index.isEmpty else {
            throw PlotError("frame = {\(index.map(String.init).joined(separator: ", "))} fixes \(index.count) of the \(signal.ndim) dimensions of shape \(NDArray.describe(signal.shape)): fix all but the last one or two")
        }
        var items: [Selection.Item] = []
        for (k, i) in index.enumerated() {
            let n = signal.shape[k]
            guard i >= -n && i < n else { throw PlotError("frame index \(i) is out of range for dimension \(k) of length \(n)") }
            items.append(.index(.int(i)))
        }
        let sel = Selection(items + [.ellipsis])
        var out = self
        out.signal = try signal.view(sel)
        out.errors = try errors.map { try $0.view(sel) }
        out.axes = Array(axes.suffix(keep))
        out.axisLabels = Array(axisLabels.suffix(keep))
        let where_ = zip(index, axisLabels).map { i, l in l.map { "\($0)[\(i)]" } ?? "\(i)" }.joined(separator: ", ")
        out.title = (title.map { $0 + " " } ?? "") + "[\(where_)]"
        return out
    }

    /// Sums over `axis` within `range` of positions (all by default), as nexusformat's
    /// NXdata.project: the result has that axis removed; errors add in quadrature.
    public func project(axis: Int, range: Range<Int>? = nil) throws -> PlotInput {
        guard signal.ndim >= 2 else { throw PlotError("project needs a signal of 2 or more dimensions, got shape \(NDArray.describe(signal.shape))") }
        let ax = axis < 0 ? axis + signal.ndim : axis
        guard ax >= 0 && ax < signal.ndim else { throw PlotError("axis \(axis) is out of range for a signal of \(signal.ndim) dimensions") }
        let n = signal.shape[ax]
        let r = range ?? 0..<n
        guard r.lowerBound >= 0, r.upperBound <= n, !r.isEmpty else {
            throw PlotError("range \(r.lowerBound):\(r.upperBound) is empty or outside 0:\(n) along axis \(ax)")
        }
        var items = [Selection.Item](repeating: .range(nil, nil, nil), count: signal.ndim)
        items[ax] = .range(.int(r.lowerBound), .int(r.upperBound), nil)
        let sel = Selection(items)
        var out = self
        out.signal = try signal.view(sel).contiguous(as: .float64).sum(axes: [ax])
        if let e = errors {
            let v = try e.view(sel).contiguous(as: .float64)
            let sq = try NDArray(uninitialized: v.shape, dtype: .float64)
            let src = v.base(Double.self), dst = sq.base(Double.self)
            for i in 0..<v.count { dst[i] = src[i] * src[i] }
            let s = try sq.sum(axes: [ax])
            let p = s.base(Double.self)
            for i in 0..<s.count { p[i] = p[i].squareRoot() }
            out.errors = s
        }
        out.axes.remove(at: ax)
        let label = axisLabels[ax]
        out.axisLabels.remove(at: ax)
        out.pixelMask = nil
        out.counts = false
        let what = label ?? "axis \(ax)"
        out.title = (title.map { $0 + ": " } ?? "") + "sum over \(what) [\(r.lowerBound):\(r.upperBound)]"
        return out
    }

    /// Size-1 dimensions dropped (with their axes), as NeXpy does.
    func squeezed() throws -> PlotInput {
        let keep = signal.shape.indices.filter { signal.shape[$0] != 1 }
        if keep.count == signal.ndim { return self }
        var out = self
        let drop = signal.shape.indices.filter { signal.shape[$0] == 1 }
        out.signal = try signal.squeezed(drop)
        out.errors = try errors.map { try $0.squeezed(drop) }
        out.axes = keep.map { axes[$0] }
        out.axisLabels = keep.map { axisLabels[$0] }
        return out
    }
}

/// How to draw: the options of plot, oplot, fig:image and fig:line.
public struct PlotOptions: Sendable {
    public var cmap: String?
    public var scale: Scale?
    public var vmin: Double?
    public var vmax: Double?
    public var autoscale: Autoscale?
    public var mask = MaskRules()
    public var maskArray: NDArray?
    public var aspect: Aspect?
    public var origin: Origin?
    public var colorbar: Bool?
    public var xlabel: String?
    public var ylabel: String?
    public var title: String?
    public var marker: Marker?
    public var line: Bool?
    public var color: RGB?
    public var label: String?
    public var errors = true
    /// Error bars given with the values (plot(x, y, {errors = e}), fig:line).
    public var errorValues: [Double]?
    public var frame: [Int]?
    public var logx: Bool?
    public var logy: Bool?
    public var xlim: (Double, Double)?
    public var ylim: (Double, Double)?
    public init() {}
}

extension Panel {
    /// Draws `input` on this panel: 1-D as a line (added to the ones there), 2-D as the
    /// panel's image. Labels and title are set when the panel has none yet (plot) or
    /// were asked for. N-d signals need a frame.
    public func add(_ input: PlotInput, _ o: PlotOptions) throws {
        var inp = input
        try inp.check()
        if let f = o.frame { inp = try inp.frame(f) }
        if inp.squeeze { inp = try inp.squeezed() }
        let shape = inp.signal.shape
        guard inp.signal.count > 0 else { throw PlotError("cannot plot an empty array (shape \(NDArray.describe(input.signal.shape)))") }
        switch inp.signal.ndim {
        case 0, 1:
            let y = inp.signal.ndim == 0 ? [try inp.signal.value(at: [])] : inp.signal.doubles()
            var x = inp.axes.first.flatMap { $0 }
            if let xv = x, xv.count == y.count + 1 { x = (0..<y.count).map { (xv[$0] + xv[$0 + 1]) / 2 } }
            var yerr: [Double]? = nil
            if o.errors {
                if let e = o.errorValues { yerr = e }
                else if let e = inp.errors { yerr = e.doubles() }
                else if inp.counts { yerr = y.map { $0 > 0 ? $0.squareRoot() : 0 } }
            }
            let marker = o.marker ?? (inp.markers ? .circle : Marker.none)
            let line = try Line(x: x, y: y, yerr: yerr, label: o.label, color: o.color, marker: marker,
                                line: o.line ?? !inp.markers)
            lines.append(line)
            if xlabel == nil { xlabel = inp.axisLabels.first.flatMap { $0 } }
            if ylabel == nil { ylabel = inp.signalLabel }
        case 2:
            var rules = o.mask
            if let m = o.maskArray ?? inp.pixelMask {
                guard m.shape == shape else {
                    throw PlotError("mask of shape \(NDArray.describe(m.shape)) does not match the image's \(NDArray.describe(shape))")
                }
                let c = try m.contiguous(as: .float64)
                let p = c.base(Double.self)
                rules.pixelMask = (0..<c.count).map { p[$0] != 0 ? 1 : 0 }
            }
            let data = try ImageData(inp.signal, mask: rules)
            let layer = try ImageLayer(data, x: inp.axes[1], y: inp.axes[0], colormap: try colormap(o.cmap),
                                       scale: o.scale ?? .linear, autoscale: o.autoscale, vmin: o.vmin, vmax: o.vmax)
            if let origin = o.origin { layer.origin = origin }
            image = layer
            if xlabel == nil { xlabel = inp.axisLabels[1] }
            if ylabel == nil { ylabel = inp.axisLabels[0] }
        default:
            let frames = shape.dropLast(2).map { _ in "0" } + [":", ":"]
            throw PlotError("cannot plot a signal of \(shape.count) dimensions \(NDArray.describe(shape)) whole: plot one frame with {frame = \(shape.count == 3 ? "100" : "{" + shape.dropLast(2).map { _ in "0" }.joined(separator: ", ") + "}")} or a slice [\"\(frames.joined(separator: ", "))\"], or sum a range with :project{axis = 0, range = {10, 50}}")
        }
        if title == nil { title = inp.title }
        apply(o)
    }

    /// The options that belong to the panel (labels, limits, scales, colorbar, aspect).
    public func apply(_ o: PlotOptions) {
        if let v = o.title { title = v }
        if let v = o.xlabel { xlabel = v }
        if let v = o.ylabel { ylabel = v }
        if let v = o.logx { logx = v }
        if let v = o.logy { logy = v }
        if let v = o.xlim { xlim = v }
        if let v = o.ylim { ylim = v }
        if let v = o.colorbar { colorbar = v }
        if let v = o.aspect { aspect = v }
    }

    func colormap(_ name: String?) throws -> Colormap {
        guard let name else { return Colormap.named(Colormap.defaultName)! }
        guard let m = Colormap.named(name) else {
            throw PlotError("unknown colormap '\(name)' (known: \(Colormap.names.joined(separator: ", ")), each also with _r)")
        }
        return m
    }
}
