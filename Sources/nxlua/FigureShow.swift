#if canImport(Glibc)
import Glibc
#endif
import NXLuaRuntime
import Plot
import TerminalGraphics

/// Figures shown by plot, oplot, logplot and fig:show() go to the terminal: TerminalGraphics
/// picks the protocol (NXLUA_PLOT, the terminal's variables) and writes nothing when stdout
/// is not a terminal, under CI or with NXLUA_PLOT=none; the figure is drawn only then.
func installFigureDisplay() {
    FigureDisplay.show = { figure in
        let p = TerminalGraphics.detect(environment: TerminalGraphics.processEnvironment(), isTerminal: isatty(1) != 0)
        guard p != .none, let r = try? figure.rgba() else { return }
        TerminalGraphics.show(image: RGBAImage(width: r.width, height: r.height, pixels: r.bytes),
                              png: { (try? figure.pngData()) ?? [] })
    }
}
