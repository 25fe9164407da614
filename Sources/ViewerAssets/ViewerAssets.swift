/// The web viewer's own files (HTML, CSS, ES modules in web/), compiled into the binary
/// (SwiftPM's embedInCode) so that `nxlua serve` needs no file beside it. JavaScript
/// libraries are not here: they come from Debian packages (docs/viewer.md).
public enum ViewerAssets {
    public struct File: Sendable {
        public let bytes: [UInt8]
        public let contentType: String
    }

    /// The file called `name` ("app.js"), nil for any other name.
    public static func file(_ name: String) -> File? {
        let js = "text/javascript; charset=utf-8"
        switch name {
        case "index.html": return File(bytes: PackageResources.index_html, contentType: "text/html; charset=utf-8")
        case "viewer.css": return File(bytes: PackageResources.viewer_css, contentType: "text/css; charset=utf-8")
        case "app.js": return File(bytes: PackageResources.app_js, contentType: js)
        case "api.js": return File(bytes: PackageResources.api_js, contentType: js)
        case "tree.js": return File(bytes: PackageResources.tree_js, contentType: js)
        case "image.js": return File(bytes: PackageResources.image_js, contentType: js)
        case "line.js": return File(bytes: PackageResources.line_js, contentType: js)
        default: return nil
        }
    }
}
