#include "Common/Md5.h"

#include <gtest/gtest.h>

#include <string>

using namespace AzureDicom;

// The digests of RFC 1321, appendix A.5, unless a test names another source.

TEST(Md5Test, EmptyInput)
{
  Md5 digest;

  EXPECT_EQ(digest.Finish(), "d41d8cd98f00b204e9800998ecf8427e");
}


TEST(Md5Test, Abc)
{
  Md5 digest;
  digest.Update("abc", 3);

  EXPECT_EQ(digest.Finish(), "900150983cd24fb0d6963f7d28e17f72");
}


TEST(Md5Test, UpdatesInPiecesGiveSameDigest)
{
  const std::string text =
      "12345678901234567890123456789012345678901234567890123456789012345678901234567890";
  Md5 whole;
  whole.Update(text.data(), text.size());
  Md5 pieces;
  pieces.Update(text.data(), 7);
  pieces.Update(text.data() + 7, 0);
  pieces.Update(text.data() + 7, text.size() - 7);

  const std::string expected = "57edf4a22be3c955ac49da2e2107b67a";
  EXPECT_EQ(whole.Finish(), expected);
  EXPECT_EQ(pieces.Finish(), expected);
}


TEST(Md5Test, FinishStartsNewDigest)
{
  Md5 digest;
  digest.Update("message digest", 14);
  EXPECT_EQ(digest.Finish(), "f96b697d7cb7938d525a2f31aaf161d0");

  EXPECT_EQ(digest.Finish(), "d41d8cd98f00b204e9800998ecf8427e");
  digest.Update("abc", 3);
  EXPECT_EQ(digest.Finish(), "900150983cd24fb0d6963f7d28e17f72");
}


TEST(Md5Test, BinaryInputWithNul)
{
  const char bytes[] = {'a', '\0', 'b'};
  Md5 digest;
  digest.Update(bytes, sizeof(bytes));

  // md5sum of the same 3 bytes. The digest of "ab" is 187ef4436122d1cc2f40dc2b92f0eba0.
  EXPECT_EQ(digest.Finish(), "70350f6027bce3713f6b76473084309b");
}
