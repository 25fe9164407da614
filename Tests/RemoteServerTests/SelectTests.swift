import XCTest
@testable import RemoteServer
